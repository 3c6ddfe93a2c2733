"""Embed: look up row x of a (input_dim, num_output) weight table for each bottom value x.

The bottom holds integer indices in [0, input_dim) (as floats, like Caffe's labels);
anything else is an error naming the first bad value. Top: the bottom's shape plus
num_output; with `bias_term` (default) a (num_output,) bias is added. The backward
adds the top diff to the rows that were used (and sums it into the bias); the
indices get no gradient (their diff, if asked for, is zero).
"""

from __future__ import annotations

from pipeline_lib.core.backend import scatter_add, to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class EmbedLayer(Layer):
    type = "Embed"
    num_bottom = (1, 1)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ep = self.param.embed_param
        self.num_output = int(ep.num_output)
        self.input_dim = int(ep.input_dim)
        if self.num_output <= 0:
            raise self.error("embed_param.num_output must be positive")
        if self.input_dim <= 0:
            raise self.error("embed_param.input_dim must be positive")
        self.bias_term = bool(ep.bias_term)
        self.weight_and_bias((self.input_dim, self.num_output),
                             self.num_output if self.bias_term else None,
                             ep.weight_filler, ep.bias_filler)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, bottom: Blob):
        xp = self.xp
        x = bottom.data.reshape(-1)
        index = x.astype(xp.int64)
        bad = (index != x) | (index < 0) | (index >= self.input_dim)
        if bool(bad.any()):
            where = int(to_host(xp.argmax(bad)))
            raise self.error(f"bottom value {float(to_host(x[where]))!r} at flat index {where} "
                             f"is not an integer index in [0, {self.input_dim}) (input_dim)")
        return index

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.index = self._indices(bottom[0])
        out = top[0].data.reshape(-1, self.num_output)
        self.xp.take(self.blobs[0].data, self.index, axis=0, out=out)
        if self.bias_term:
            out += self.blobs[1].data

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff.reshape(-1, self.num_output)
        scatter_add(self.blobs[0].diff, self.index, dy)
        if self.bias_term:
            self.blobs[1].diff += dy.sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = 0
