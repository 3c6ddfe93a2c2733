"""What every Caffe solver type shares: history blobs and the steps around the update.

Caffe's SGD-family `ApplyUpdate`, per iteration, in this order:
  1. clip_gradients: if the L2 norm of all param diffs together exceeds
     `clip_gradients` (>= 0), scale every diff by clip_gradients / norm;
  2. per param, normalize (diff /= iter_size, as diffs were summed over
     iter_size passes), regularize (diff += local_decay * data for L2, or
     * sign(data) for L1; local_decay = weight_decay * decay_mult) and compute
     the update value into diff with local_rate = rate * lr_mult (the rule);
  3. data -= diff for every learnable param.
A rule may fuse 2 and 3 into one pass (`fused_step`; SGD does: a GPU kernel, or with
numba a compiled CPU loop).

`history` holds the rule's state in Caffe's .solverstate order: one array per
param, and rules with two (AdaDelta, Adam) append the second set after the
first. All math is in place on the params' array module (NumPy or CuPy), with
one scratch array per param allocated once. Steps 2 and 3 are elementwise: on
NumPy the params are seen end to end and split once into a range of values per
lane (core/lanes), each rule seeing its arrays through `part`, with the same
operations on every value.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob
from pipeline_lib.proto import caffe_pb2

REGULARIZATION_TYPES = ("L2", "L1")
_lane = threading.local()  # .part: the (start, stop) of the values a lane updates


class SolverParameterError(ValueError):
    """A solver's parameters do not fit its type."""


class UpdateRule:
    """Base of the per-type update rules; subclasses register under Caffe's type string."""

    type: ClassVar[str] = ""
    #: history arrays per learnable param (Caffe's history_ length / param count)
    history_per_param: ClassVar[int] = 1

    def __init__(self, sp: caffe_pb2.SolverParameter, params: Sequence[Blob],
                 lr_mults: Sequence[float], decay_mults: Sequence[float]):
        if not len(params) == len(lr_mults) == len(decay_mults):
            raise ValueError(f"{len(params)} params but {len(lr_mults)} lr_mult and "
                             f"{len(decay_mults)} decay_mult values")
        self.check(sp)
        if sp.regularization_type not in REGULARIZATION_TYPES:
            raise SolverParameterError(
                f"unknown regularization_type {sp.regularization_type!r}; expected L2 or L1")
        if sp.iter_size < 1:
            raise SolverParameterError(f"iter_size must be >= 1, got {sp.iter_size}")
        self.params = list(params)
        self.lr_mults = [float(v) for v in lr_mults]
        self.decay_mults = [float(v) for v in decay_mults]
        self.momentum = float(sp.momentum)
        self.weight_decay = float(sp.weight_decay)
        self.l1 = sp.regularization_type == "L1"
        self.iter_size = int(sp.iter_size)
        self.clip = float(sp.clip_gradients)
        self.delta = float(sp.delta)
        self.history = [p.xp.zeros_like(p.data)
                        for _ in range(self.history_per_param) for p in self.params]
        self._scratch = [p.xp.empty_like(p.data) for p in self.params]

    @classmethod
    def check(cls, sp: caffe_pb2.SolverParameter) -> None:
        """Refuse parameters the type cannot use (Caffe's constructor sanity checks)."""

    # -- one iteration -------------------------------------------------------------
    def apply(self, rate: float, iteration: int) -> tuple[float, float] | None:
        """Turn the accumulated diffs into updates and apply them to the params.

        Returns (gradient L2 norm, scale factor) when gradients were clipped.
        """
        clipped = self.clip_gradients()
        rates = [rate * mult for mult in self.lr_mults]
        flat, offsets, total = [], [], 0  # params updated by ranges of their values
        for i, p in enumerate(self.params):
            arrays = [p.data, p.diff, *self.history[i::len(self.params)], self._scratch[i]]
            if p.xp is np and all(a.flags.c_contiguous for a in arrays):
                flat.append(i)
                offsets.append(total)
                total += p.data.size
            else:
                self._update(i, rates[i], iteration)

        def values(a: int, b: int) -> None:
            """Values a..b of the NumPy params laid end to end."""
            for i, start in zip(flat, offsets):
                lo, hi = max(a, start), min(b, start + self.params[i].data.size)
                if lo < hi:
                    self._update_part(i, rates[i], iteration, lo - start, hi - start)

        # one split for all of them: a lane's range may cover several small params
        lanes.split(np, total, values, lanes.ELEMENTWISE_GRAIN)
        return clipped

    def _update_part(self, i: int, local_rate: float, iteration: int, start: int,
                     stop: int) -> None:
        _lane.part = (start, stop)
        try:
            self._update(i, local_rate, iteration)
        finally:
            _lane.part = None

    def _update(self, i: int, local_rate: float, iteration: int) -> None:
        """Steps 2 and 3 for param i (or the part of it `part` gives)."""
        self.normalize(i)
        if self.fused_step(i, local_rate, iteration):
            return
        self.regularize(i)
        self.compute_update(i, local_rate, iteration)
        data = self.part(self.params[i].data)
        data -= self.part(self.params[i].diff)

    @staticmethod
    def part(array):
        """The values of a param-shaped array that this call updates: all of them, or inside
        a lane its range of the flat array."""
        bounds = getattr(_lane, "part", None)
        return array if bounds is None else array.reshape(-1)[bounds[0]:bounds[1]]

    def fused_step(self, i: int, local_rate: float, iteration: int) -> bool:
        """Regularize, update and apply param i in one GPU kernel, where a rule has one.

        Returns False (the default) to take the step by step path. On a GPU every
        array operation is a kernel launch; fusing them saves launches, not math.
        """
        return False

    def clip_gradients(self) -> tuple[float, float] | None:
        if self.clip < 0:
            return None
        sumsq = 0.0
        for p in self.params:
            flat = p.diff.reshape(-1)
            sumsq += float(p.xp.vdot(flat, flat))
        norm = math.sqrt(sumsq)
        if norm <= self.clip:
            return None
        scale = self.clip / norm
        for p in self.params:
            p.diff *= scale
        return norm, scale

    def normalize(self, i: int) -> None:
        if self.iter_size != 1:
            diff = self.part(self.params[i].diff)
            diff *= 1.0 / self.iter_size

    def regularize(self, i: int) -> None:
        decay = self.weight_decay * self.decay_mults[i]
        if not decay:
            return
        xp, tmp = self.params[i].xp, self.part(self._scratch[i])
        data, diff = self.part(self.params[i].data), self.part(self.params[i].diff)
        if self.l1:
            xp.sign(data, out=tmp)
            tmp *= decay
        else:
            xp.multiply(data, decay, out=tmp)
        diff += tmp

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        """Replace params[i].diff by the value to subtract from params[i].data."""
        raise NotImplementedError

    # -- history layout ------------------------------------------------------------
    def second_history(self, i: int):
        """The second history array of param i (AdaDelta's update history, Adam's v)."""
        return self.part(self.history[len(self.params) + i])


UPDATE_RULES: dict[str, type[UpdateRule]] = {}


def register(cls: type[UpdateRule]) -> type[UpdateRule]:
    """Class decorator: make `cls` the rule of solver type `cls.type`."""
    if not cls.type:
        raise TypeError(f"{cls.__name__} has no type string")
    UPDATE_RULES[cls.type] = cls
    return cls
