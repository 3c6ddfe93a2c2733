"""RNN: h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]),
o_t = tanh(W_ho h_t + b_o); the top is o (T x N x num_output).

Learnable blobs in Caffe's order: W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o.
Bottoms, tops, carried state and gradients: see recurrent.py.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.recurrent import RecurrentBase


@register
class RNNLayer(RecurrentBase):
    type = "RNN"
    state_names = ("h",)

    def recurrent_shapes(self, width: int) -> list[tuple[int, ...]]:
        return [(width, width), (width, width), (width,)]

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        xw, sw = self._input_terms(bottom)
        conts = self._conts(bottom)
        w_hh = self._recurrent_weight.data
        (h,) = self._initial_state(bottom)
        hs = xp.empty((self.steps, self.streams, self.hidden), self.dtype)
        self.conted = xp.empty_like(hs)  # cont_t h_{t-1}, kept for backward
        for t in range(self.steps):
            self.conted[t] = conts[t] * h
            h = xp.tanh(self.conted[t] @ w_hh.T + xw[t] + sw)
            hs[t] = h
        self.hs = hs
        w_ho, b_o = self.blobs[-2].data, self.blobs[-1].data
        self.out = xp.tanh(hs @ w_ho.T + b_o)
        top[0].data[...] = self.out
        self._finish([h], top)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        conts = self._conts(bottom)
        w_hh = self._recurrent_weight
        w_ho, b_o = self.blobs[-2], self.blobs[-1]
        d_pre_o = top[0].diff.reshape(self.out.shape) * (1 - self.out * self.out)
        flat = d_pre_o.reshape(-1, self.hidden)
        w_ho.diff += flat.T @ self.hs.reshape(-1, self.hidden)
        b_o.diff += flat.sum(axis=0)
        d_h_out = d_pre_o @ w_ho.data
        d_xw = xp.empty_like(d_h_out)
        d_next = xp.zeros((self.streams, self.hidden), self.dtype)
        for t in reversed(range(self.steps)):
            h = self.hs[t]
            d_pre = (d_h_out[t] + d_next) * (1 - h * h)
            w_hh.diff += d_pre.T @ self.conted[t]
            d_xw[t] = d_pre
            d_next = (d_pre @ w_hh.data) * conts[t]
        d_sw = d_xw.sum(axis=0) if self.static else None
        self._input_backward(d_xw, d_sw, propagate_down, bottom)
