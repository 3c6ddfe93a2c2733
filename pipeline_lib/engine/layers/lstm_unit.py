"""LSTMUnit: one LSTM step from the previous cell and the gate pre-activations.

Bottoms: c_prev (1 x N x D), X (1 x N x 4D: the i, f, o, g blocks, in that
order) and cont (1 x N); tops: c and h (1 x N x D each). With sigmoid s:
i = s(X_i), f = cont * s(X_f) (0 where cont is 0), o = s(X_o), g = tanh(X_g),
c = f c_prev + i g, h = o tanh(c). Gradients to c_prev and X as Caffe computes
them (for f it uses f (1 - f), exact for cont in {0, 1}); none to cont.
`lstm_step` and `lstm_step_backward` are also the LSTM layer's step.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


def _sigmoid(xp, x):
    return 0.5 * xp.tanh(0.5 * x) + 0.5


def lstm_step(xp, c_prev, x, cont):
    """(c, h) for c_prev (N, D), x (N, 4D), cont (N, 1)."""
    d = c_prev.shape[-1]
    i = _sigmoid(xp, x[:, :d])
    f = xp.where(cont == 0, 0, cont * _sigmoid(xp, x[:, d:2 * d]))
    o = _sigmoid(xp, x[:, 2 * d:3 * d])
    g = xp.tanh(x[:, 3 * d:])
    c = f * c_prev + i * g
    return c, o * xp.tanh(c)


def lstm_step_backward(xp, c_prev, x, cont, c, dc, dh):
    """(d c_prev, d x) given the step's inputs, its cell c and the diffs of c and h."""
    d = c_prev.shape[-1]
    i = _sigmoid(xp, x[:, :d])
    f = xp.where(cont == 0, 0, cont * _sigmoid(xp, x[:, d:2 * d]))
    o = _sigmoid(xp, x[:, 2 * d:3 * d])
    g = xp.tanh(x[:, 3 * d:])
    tanh_c = xp.tanh(c)
    dc_total = dc + dh * o * (1 - tanh_c * tanh_c)
    dx = xp.concatenate([dc_total * g * i * (1 - i),
                         dc_total * c_prev * f * (1 - f),
                         dh * tanh_c * o * (1 - o),
                         dc_total * i * (1 - g * g)], axis=1)
    return dc_total * f, dx


@register
class LSTMUnitLayer(Layer):
    type = "LSTMUnit"
    num_bottom = (3, 3)
    num_top = (2, 2)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        c, x, cont = (b.shape for b in bottom)
        if len(c) != 3 or c[0] != 1:
            raise self.error(f"c_prev (bottom[0]) must be 1 x N x D, got shape {c}")
        n, d = c[1], c[2]
        if x != (1, n, 4 * d):
            raise self.error(f"X (bottom[1]) must be 1 x {n} x {4 * d} (4 gates of {d}), "
                             f"got shape {x}")
        if cont != (1, n):
            raise self.error(f"cont (bottom[2]) must be 1 x {n}, got shape {cont}")
        self.n, self.d = n, d
        top[0].reshape(c)
        top[1].reshape(c)

    def _inputs(self, bottom: list[Blob]):
        return (bottom[0].data.reshape(self.n, self.d),
                bottom[1].data.reshape(self.n, 4 * self.d),
                bottom[2].data.reshape(self.n, 1).astype(self.dtype))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        c, h = lstm_step(self.xp, *self._inputs(bottom))
        top[0].data[...] = c.reshape(top[0].shape)
        top[1].data[...] = h.reshape(top[1].shape)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[2]:
            bottom[2].diff[...] = 0  # sequence indicators get no gradient
        if not (propagate_down[0] or propagate_down[1]):
            return
        shape = (self.n, self.d)
        dc_prev, dx = lstm_step_backward(
            self.xp, *self._inputs(bottom), top[0].data.reshape(shape),
            top[0].diff.reshape(shape), top[1].diff.reshape(shape))
        if propagate_down[0]:
            bottom[0].diff[...] = dc_prev.reshape(bottom[0].shape)
        if propagate_down[1]:
            bottom[1].diff[...] = dx.reshape(bottom[1].shape)
