"""Eltwise: elementwise PROD, SUM (with one coefficient per bottom) or MAX of bottoms."""

from __future__ import annotations

import functools

from pipeline_lib.core import lanes
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
        xs = [b.data for b in bottom]
        y = top[0].data
        # a top that is also a bottom gets the result after each range is read
        out = xp.empty_like(y) if any(x is y for x in xs) else y
        arrays = [out, *xs]
        if self.op == _Op.MAX:
            self.argmax = xp.empty(y.shape, xp.int32)
            arrays.append(self.argmax)
        elif self.op not in (_Op.PROD, _Op.SUM):
            raise self.error(f"unknown eltwise_param.operation {self.op}")

        def values(out, *rest) -> None:
            xs, argmax = (rest[:-1], rest[-1]) if self.op == _Op.MAX else (rest, None)
            self._combine(out, xs, argmax)

        lanes.elementwise(xp, values, *arrays)
        if out is not y:
            y[...] = out

    def _combine(self, out, xs, argmax) -> None:
        """`out` = the op over the bottoms' values `xs` (MAX: `argmax` = the winner)."""
        xp = self.xp
        if self.op == _Op.PROD:
            xp.multiply(xs[0], xs[1], out=out)
            for x in xs[2:]:
                out *= x
        elif self.op == _Op.SUM:
            xp.multiply(xs[0], self.coeffs[0], out=out)
            for c, x in zip(self.coeffs[1:], xs[1:]):
                out += c * x
        else:
            # Caffe's tie rule: bottom[1] wins a tie with bottom[0]; later bottoms win
            # only when strictly greater.
            first = xs[0] > xs[1]
            out[...] = xp.where(first, xs[0], xs[1])
            argmax[...] = xp.where(first, 0, 1)
            for i, x in enumerate(xs[2:], start=2):
                better = x > out
                out[...] = xp.where(better, x, out)
                argmax[better] = i

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        dy, y = top[0].diff, top[0].data
        for i, (b, down) in enumerate(zip(bottom, propagate_down)):
            if not down:
                continue
            if self.op == _Op.PROD and self.stable_prod_grad:
                others = [o.data for j, o in enumerate(bottom) if j != i]
                lanes.elementwise(self.xp, _product_grad, b.diff, dy, *others)
            elif self.op == _Op.PROD:
                lanes.elementwise(self.xp, _quotient_grad, b.diff, dy, y, b.data)
            elif self.op == _Op.SUM:
                lanes.elementwise(self.xp, functools.partial(_scaled, self.coeffs[i]),
                                  b.diff, dy)
            else:
                lanes.elementwise(self.xp, functools.partial(_routed, i), b.diff, dy,
                                  self.argmax)


def _product_grad(d, dy, *others) -> None:
    """d = dy times every other bottom (stable_prod_grad)."""
    g = others[0] * dy
    for o in others[1:]:
        g *= o
    d[...] = g


def _quotient_grad(d, dy, y, x) -> None:
    """d = top / bottom * dy (Caffe's default PROD gradient)."""
    d[...] = y / x * dy


def _scaled(c: float, d, dy) -> None:
    d[...] = dy if c == 1.0 else c * dy


def _routed(i: int, d, dy, winner) -> None:
    """MAX: dy where bottom i won, else 0."""
    d[...] = dy * (winner == i)
