"""Eltwise: elementwise PROD, SUM (with one coefficient per bottom) or MAX of bottoms."""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register
from pipeline_lib.proto import caffe_pb2

_Op = caffe_pb2.EltwiseParameter


@register
class EltwiseLayer(Layer):
    type = "Eltwise"
    num_bottom = (2, None)
    num_top = (1, 1)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        ep = self.param.eltwise_param
        self.op = ep.operation
        if ep.coeff and len(ep.coeff) != len(bottom):
            raise self.error(f"{len(ep.coeff)} coeff(s) for {len(bottom)} bottoms; give one "
                             f"per bottom or none")
        if ep.coeff and self.op != _Op.SUM:
            raise self.error("coeff is only allowed with operation SUM")
        self.coeffs = [float(c) for c in ep.coeff] or [1.0] * len(bottom)
        self.stable_prod_grad = bool(ep.stable_prod_grad)
        self.argmax = None  # index of the winning bottom, for MAX

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for i, b in enumerate(bottom[1:], start=1):
            if b.shape != bottom[0].shape:
                raise self.error(f"bottoms must have the same shape: bottom[0] "
                                 f"{bottom[0].name!r} {bottom[0].shape} vs bottom[{i}] "
                                 f"{b.name!r} {b.shape}")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        xp = self.xp
        if self.op == _Op.PROD:
            out = bottom[0].data * bottom[1].data
            for b in bottom[2:]:
                out *= b.data
        elif self.op == _Op.SUM:
            out = self.coeffs[0] * bottom[0].data
            for c, b in zip(self.coeffs[1:], bottom[1:]):
                out += c * b.data
        elif self.op == _Op.MAX:
            # Caffe's tie rule: bottom[1] wins a tie with bottom[0]; later bottoms win
            # only when strictly greater.
            a, b = bottom[0].data, bottom[1].data
            first = a > b
            out = xp.where(first, a, b)
            self.argmax = xp.where(first, 0, 1).astype(xp.int32)
            for i, blob in enumerate(bottom[2:], start=2):
                better = blob.data > out
                out = xp.where(better, blob.data, out)
                self.argmax[better] = i
        else:
            raise self.error(f"unknown eltwise_param.operation {self.op}")
        top[0].data[...] = out

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy = top[0].diff
        for i, (b, down) in enumerate(zip(bottom, propagate_down)):
            if not down:
                continue
            if self.op == _Op.PROD:
                if self.stable_prod_grad:
                    others = [o.data for j, o in enumerate(bottom) if j != i]
                    grad = others[0] * dy
                    for o in others[1:]:
                        grad *= o
                else:
                    grad = top[0].data / b.data * dy
                b.diff[...] = grad
            elif self.op == _Op.SUM:
                b.diff[...] = dy if self.coeffs[i] == 1.0 else self.coeffs[i] * dy
            else:
                b.diff[...] = dy * (self.argmax == i)
