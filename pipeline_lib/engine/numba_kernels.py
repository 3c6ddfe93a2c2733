"""The numba kernels behind engine/kernels.py (imported only when numba is installed).

Each is a plain loop over NumPy arrays in the layouts the layers use (NHWC
images, the patch matrices of conv_utils); scalars come in the arrays' dtype.
No fastmath: float operations happen as written, in the order written.
"""

from __future__ import annotations

from numba import njit

jit = njit(cache=True, nogil=True)


@jit
def max_pool_forward(src, y, winner, kh, kw, sh, sw):
    """MAX over windows of a padded NHWC `src`: maxima into `y` (np.maximum's rule, tap
    after tap: a NaN wins, of equal values the later), and into `winner` the tap of the
    first maximum (0 where the maximum is NaN)."""
    n, oh, ow, c = y.shape
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                r, s = oy * sh, ox * sw
                out, win = y[b, oy, ox], winner[b, oy, ox]
                first = src[b, r, s]
                for k in range(c):
                    out[k] = first[k]
                    win[k] = 0
                for i in range(kh):
                    for j in range(kw):
                        if i == 0 and j == 0:
                            continue
                        row, q = src[b, r + i, s + j], i * kw + j
                        for k in range(c):
                            m, v = out[k], row[k]
                            win[k] = q if v > m else win[k]
                            out[k] = m if (m > v or m != m) else v
                for k in range(c):
                    if out[k] != out[k]:
                        win[k] = 0


@jit
def max_pool_backward(dy, winner, dx, kh, kw, sh, sw, tiles, zero):
    """Bottom diff of MAX on NHWC views, tap by tap: dx (padded) = or += dy * (winner == q).
    Without `tiles`, dx must hold zeros."""
    n, oh, ow, c = dy.shape
    for b in range(n):
        for q in range(kh * kw):
            i, j = q // kw, q % kw
            for oy in range(oh):
                for ox in range(ow):
                    g, w, d = dy[b, oy, ox], winner[b, oy, ox], dx[b, oy * sh + i, ox * sw + j]
                    if tiles:
                        for k in range(c):
                            d[k] = g[k] if w[k] == q else g[k] * zero
                    else:
                        for k in range(c):
                            d[k] = d[k] + (g[k] if w[k] == q else g[k] * zero)


@jit
def ave_pool_forward(src, y, inv_area, kh, kw, sh, sw):
    """AVE on NHWC views: the taps summed in row-major order, times 1 / area."""
    n, oh, ow, c = y.shape
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                r, s = oy * sh, ox * sw
                out = y[b, oy, ox]
                out[:] = src[b, r, s]
                for q in range(1, kh * kw):
                    row = src[b, r + q // kw, s + q % kw]
                    for k in range(c):
                        out[k] = out[k] + row[k]
                a = inv_area[oy, ox]
                for k in range(c):
                    out[k] = out[k] * a


@jit
def ave_pool_backward(dy, inv_area, dx, kh, kw, sh, sw, tiles):
    """Bottom diff of AVE on NHWC views: dx (padded) = or += dy / area, tap by tap."""
    n, oh, ow, c = dy.shape
    for b in range(n):
        for q in range(kh * kw):
            i, j = q // kw, q % kw
            for oy in range(oh):
                for ox in range(ow):
                    g, d = dy[b, oy, ox], dx[b, oy * sh + i, ox * sw + j]
                    a = inv_area[oy, ox]
                    if tiles:
                        for k in range(c):
                            d[k] = g[k] * a
                    else:
                        for k in range(c):
                            d[k] = d[k] + g[k] * a


@jit
def col2im_add(cols, dx, kh, kw, sh, sw, dh, dw):
    """Add per-tap patch gradients `cols` (G, kh*kw, N, oh, ow, C/G) into a padded NHWC
    `dx`, taps in row-major order (the adjoint of im2col)."""
    g, _, n, oh, ow, cg = cols.shape
    for b in range(n):
        for q in range(kh * kw):
            i, j = q // kw, q % kw
            for oy in range(oh):
                for ox in range(ow):
                    d = dx[b, oy * sh + i * dh, ox * sw + j * dw]
                    for gi in range(g):
                        src = cols[gi, q, b, oy, ox]
                        for k in range(cg):
                            d[gi * cg + k] = d[gi * cg + k] + src[k]


@jit
def sgd_update(w, g, v, rate, momentum, decay):
    """SGD with momentum and L2 decay on flat arrays, as the NumPy steps in this order:
    g += w * decay (when decay != 0); v = v * momentum + g * rate; g = v; w -= g."""
    for k in range(w.size):
        grad = g[k]
        if decay != 0:
            grad = grad + w[k] * decay
        vk = v[k] * momentum + grad * rate
        v[k] = vk
        g[k] = vk
        w[k] = w[k] - vk

