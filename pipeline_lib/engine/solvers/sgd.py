"""SGD with momentum: v = momentum * v + local_rate * g; update = v.

On CuPy arrays, regularization, the update and its application run as one
elementwise kernel per param (the same formulas; the GPU may fuse a multiply
and an add into one rounding). On NumPy arrays with numba installed, L2 steps
are one compiled pass per param (engine/kernels), with the NumPy steps' bits.
"""

from __future__ import annotations

from pipeline_lib.core.backend import is_gpu_array
from pipeline_lib.engine import kernels
from pipeline_lib.engine.solvers.base import UpdateRule, register

_KERNEL_OP = """
T grad = g;
if (decay != 0) {
    grad += decay * (l1 ? (T)((w > 0) - (w < 0)) : w);
}
v = momentum * v + rate * grad;
g = v;
w -= v;
"""

_kernels: dict[int, object] = {}


def _fused_kernel(xp):
    """The fused SGD kernel, built once per array module (CuPy compiles on first use)."""
    kernel = _kernels.get(id(xp))
    if kernel is None:
        kernel = xp.ElementwiseKernel("T rate, T momentum, T decay, bool l1", "T w, T g, T v",
                                      _KERNEL_OP, "caffe_sgd_update")
        _kernels[id(xp)] = kernel
    return kernel


@register
class SGD(UpdateRule):
    type = "SGD"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fused = [is_gpu_array(p.data) for p in self.params]

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        g, v = self.part(self.params[i].diff), self.part(self.history[i])
        v *= self.momentum
        g *= local_rate
        v += g
        g[...] = v

    def fused_step(self, i: int, local_rate: float, iteration: int) -> bool:
        p = self.params[i]
        decay = self.weight_decay * self.decay_mults[i]
        t = p.data.dtype.type
        if not self._fused[i]:
            fast = kernels.compiled(p.xp)
            w, g, v = p.data, p.diff, self.history[i]
            if (fast is None or self.l1 or not w.flags.c_contiguous or not g.flags.c_contiguous
                    or not v.flags.c_contiguous):
                return False
            part = self.part
            fast.sgd_update(part(w).reshape(-1), part(g).reshape(-1), part(v).reshape(-1),
                            t(local_rate), t(self.momentum), t(decay))
            return True
        _fused_kernel(p.xp)(t(local_rate), t(self.momentum), t(decay), self.l1,
                            p.data, p.diff, self.history[i])
        return True
