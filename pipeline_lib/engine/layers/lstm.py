"""LSTM: gates_t = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static], then one
LSTMUnit step (lstm_unit.py) gives c_t and h_t; the top is h (T x N x num_output).

Learnable blobs in Caffe's order: W_xc (4D x input), b_c (4D), [W_xc_static],
W_hc (4D x D), rows in the gate order i, f, o, g. Exposed state: h_0, c_0 as
bottoms, h_T, c_T as tops. Bottoms, carried state and gradients: see recurrent.py.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.lstm_unit import lstm_step, lstm_step_backward
from pipeline_lib.engine.layers.recurrent import RecurrentBase


@register
class LSTMLayer(RecurrentBase):
    type = "LSTM"
    state_names = ("h", "c")
    gates = 4

    def recurrent_shapes(self, width: int) -> list[tuple[int, ...]]:
        return [(width, self.hidden)]

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        xw, sw = self._input_terms(bottom)
        conts = self._conts(bottom)
        w_hc = self._recurrent_weight.data
        h, c = self._initial_state(bottom)
        shape = (self.steps, self.streams, self.hidden)
        self.conted, self.c_prev = xp.empty(shape, self.dtype), xp.empty(shape, self.dtype)
        self.cs, hs = xp.empty(shape, self.dtype), xp.empty(shape, self.dtype)
        self.gate_in = xp.empty((self.steps, self.streams, 4 * self.hidden), self.dtype)
        for t in range(self.steps):
            self.conted[t] = conts[t] * h
            self.c_prev[t] = c
            self.gate_in[t] = self.conted[t] @ w_hc.T + xw[t] + sw
            c, h = lstm_step(xp, c, self.gate_in[t], conts[t])
            self.cs[t], hs[t] = c, h
        top[0].data[...] = hs
        self._finish([h, c], top)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        xp = self.xp
        conts = self._conts(bottom)
        w_hc = self._recurrent_weight
        d_top = top[0].diff.reshape(self.steps, self.streams, self.hidden)
        d_gates = xp.empty_like(self.gate_in)
        dh_next = xp.zeros((self.streams, self.hidden), self.dtype)
        dc_next = xp.zeros_like(dh_next)
        for t in reversed(range(self.steps)):
            dc_next, d_gates[t] = lstm_step_backward(
                xp, self.c_prev[t], self.gate_in[t], conts[t], self.cs[t], dc_next,
                d_top[t] + dh_next)
            w_hc.diff += d_gates[t].T @ self.conted[t]
            dh_next = (d_gates[t] @ w_hc.data) * conts[t]
        d_sw = d_gates.sum(axis=0) if self.static else None
        self._input_backward(d_gates, d_sw, propagate_down, bottom)
