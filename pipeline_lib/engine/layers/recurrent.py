"""What RNN and LSTM share (Caffe's RecurrentLayer), computed directly over T time steps.

Caffe unrolls an inner net of InnerProduct, Scale, Eltwise, ... layers over the
T steps with shared weights; here the same arithmetic runs as a loop over t,
with the same learnable blobs (number, order, shapes, fillers), so a
.caffemodel from Caffe loads and gives Caffe's results.

Bottoms: x (T x N x ...), cont (T x N; 0 where a sequence starts: the state
from step t-1 is dropped), then an optional static input x_static (N x ...,
added to every step's gate input), then, with `expose_hidden`, the initial
state (RNN: h_0; LSTM: h_0 and c_0, each 1 x N x num_output). Tops: the
outputs (T x N x num_output), then, with `expose_hidden`, the final state.
Without `expose_hidden` the final state of one forward is the initial state of
the next (zero at first), as in Caffe. Gradients flow to x, x_static and the
weights; as in Caffe none flows to cont, to an exposed initial state or from an
exposed final state (truncated backpropagation through time).
`recurrent_param.debug_info` is accepted and ignored: there is no inner net to
report on.
"""

from __future__ import annotations

from typing import ClassVar

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.axis_util import count
from pipeline_lib.engine.layers.base import Layer


class RecurrentBase(Layer):
    """Shapes, bottoms and tops, learnable blobs and carried state for RNN and LSTM."""

    num_bottom = (2, None)
    num_top = (1, None)
    #: the state blobs (RNN: h; LSTM: h, c), in Caffe's order of exposed bottoms and tops
    state_names: ClassVar[tuple[str, ...]] = ()
    #: gate pre-activations per output (LSTM: 4, the i, f, o, g blocks)
    gates: ClassVar[int] = 1

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        rp = self.param.recurrent_param
        self.hidden = int(rp.num_output)
        if self.hidden <= 0:
            raise self.error("recurrent_param.num_output must be positive")
        self.expose = bool(rp.expose_hidden)
        n_state = len(self.state_names) if self.expose else 0
        self.static = len(bottom) > 2 + n_state
        if len(bottom) != 2 + self.static + n_state:
            states = "".join(f", {s}_0" for s in self.state_names) if self.expose else ""
            raise self.error(f"takes x, cont, an optional x_static{states}; "
                             f"got {len(bottom)} bottoms")
        if len(top) != 1 + n_state:
            raise self.error(f"takes {1 + n_state} top(s) "
                             f"({'with' if self.expose else 'without'} expose_hidden), "
                             f"got {len(top)}")
        self._check_shapes(bottom)
        self.input_dim = count(bottom[0].shape, 2)
        self.static_dim = count(bottom[2].shape, 1) if self.static else 0
        if not self.blobs:
            width = self.gates * self.hidden
            shapes = self.blob_shapes(width)
            fillers = [rp.bias_filler if len(s) == 1 else rp.weight_filler for s in shapes]
            self.blobs = [self.make_blob(s, f) for s, f in zip(shapes, fillers)]
        got, want = [b.shape for b in self.blobs], self.blob_shapes(self.gates * self.hidden)
        if got != want:
            raise self.error(f"learnable blobs have shapes {got}, expected {want}")
        self.state = None  # the carried (N, hidden) arrays, without expose_hidden

    def blob_shapes(self, width: int) -> list[tuple[int, ...]]:
        """Caffe's order: W_x (width x input), b (width), [W_static], then the recurrent ones."""
        shapes = [(width, self.input_dim), (width,)]
        if self.static:
            shapes.append((width, self.static_dim))
        return shapes + self.recurrent_shapes(width)

    def recurrent_shapes(self, width: int) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def _check_shapes(self, bottom: list[Blob]) -> None:
        x, cont = bottom[0].shape, bottom[1].shape
        if len(x) < 2:
            raise self.error(f"x (bottom[0]) must be T x N x ..., got shape {x}")
        if cont != x[:2]:
            raise self.error(f"cont (bottom[1]) must be T x N = {x[:2]}, got shape {cont}")
        if self.static and (len(bottom[2].shape) < 1 or bottom[2].shape[0] != x[1]):
            raise self.error(f"x_static (bottom[2]) must be N x ... with N = {x[1]}, "
                             f"got shape {bottom[2].shape}")
        if self.expose:
            want = (1, x[1], self.hidden)
            for name, b in zip(self.state_names, bottom[2 + self.static:]):
                if b.shape != want:
                    raise self.error(f"{name}_0 must have shape {want}, got {b.shape}")

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._check_shapes(bottom)
        if count(bottom[0].shape, 2) != self.input_dim:
            raise self.error(f"x has {count(bottom[0].shape, 2)} values per step and stream; "
                             f"the weights expect {self.input_dim}")
        if self.static and count(bottom[2].shape, 1) != self.static_dim:
            raise self.error(f"x_static has {count(bottom[2].shape, 1)} values per stream; "
                             f"the weights expect {self.static_dim}")
        self.steps, self.streams = bottom[0].shape[:2]
        top[0].reshape((self.steps, self.streams, self.hidden))
        for t in top[1:]:
            t.reshape((1, self.streams, self.hidden))

    # -- pieces for the subclasses --------------------------------------------------------
    def _initial_state(self, bottom: list[Blob]) -> list:
        """The (N, hidden) state arrays at t = 0."""
        xp, n = self.xp, self.streams
        if self.expose:
            return [b.data.reshape(n, self.hidden) for b in bottom[2 + self.static:]]
        if self.state is None or self.state[0].shape[0] != n:
            self.state = [xp.zeros((n, self.hidden), self.dtype) for _ in self.state_names]
        return self.state

    def _finish(self, final: list, top: list[Blob]) -> None:
        """Keep or expose the final state."""
        if self.expose:
            for t, s in zip(top[1:], final):
                t.data[...] = s.reshape(t.shape)
        else:
            self.state = [s.copy() for s in final]

    def _input_terms(self, bottom: list[Blob]):
        """W_x x_t + b for every step (T, N, width), plus W_static x_static (N, width) or 0."""
        x = bottom[0].data.reshape(self.steps * self.streams, self.input_dim)
        xw = (x @ self.blobs[0].data.T + self.blobs[1].data).reshape(
            self.steps, self.streams, -1)
        sw = 0
        if self.static:
            xs = bottom[2].data.reshape(self.streams, self.static_dim)
            sw = xs @ self.blobs[2].data.T
        return xw, sw

    def _input_backward(self, d_xw, d_sw, propagate_down: list[bool], bottom: list[Blob]):
        """Given d(W_x x_t + b) (T, N, width) and d(static term) (N, width)."""
        flat = d_xw.reshape(self.steps * self.streams, -1)
        x = bottom[0].data.reshape(self.steps * self.streams, self.input_dim)
        self.blobs[0].diff += flat.T @ x
        self.blobs[1].diff += flat.sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = (flat @ self.blobs[0].data).reshape(bottom[0].shape)
        if self.static:
            xs = bottom[2].data.reshape(self.streams, self.static_dim)
            self.blobs[2].diff += d_sw.T @ xs
            if propagate_down[2]:
                bottom[2].diff[...] = (d_sw @ self.blobs[2].data).reshape(bottom[2].shape)
        for i in range(1, len(bottom)):
            if propagate_down[i] and not (self.static and i == 2):
                bottom[i].diff[...] = 0  # cont and exposed initial states get no gradient

    @property
    def _recurrent_weight(self) -> Blob:
        return self.blobs[3 if self.static else 2]

    def _conts(self, bottom: list[Blob]):
        """cont as (T, N, 1), in the blobs' dtype."""
        return bottom[1].data.reshape(self.steps, self.streams, 1).astype(self.dtype)
