"""Blob, the Layer base class and the registry of layer types.

Layers follow Caffe's contract: `setup` reads the layer's parameters and
creates learnable blobs, `reshape` sets top shapes from bottom shapes,
`forward` writes tops, `backward` writes bottom diffs (`=`) and *adds* to
the diffs of its learnable blobs (`+=`, so shared weights and `iter_size`
accumulate; the solver zeroes them). Arrays are NCHW, as in Caffe.

A 4-D blob may keep its values channels-last in memory (`channels_last`, set
by the net where producer and consumers gain from it): `data` and `diff` are
then NCHW-shaped views of (N, H, W, C) arrays, so every layer reads and writes
them as NCHW while the ones that care take `nhwc(blob.data)` for free. A
reshape of such a view may be a copy, so only layers that never write through
one may read these blobs: they say so with `accepts_channels_last`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from pipeline_lib.proto import caffe_pb2


class Blob:
    """An n-d array of values (`data`) and of gradients (`diff`, made zeroed on first use,
    so that nets which only run forward never hold one)."""

    def __init__(self, shape=(), xp=np, dtype=np.float32, name: str = ""):
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.name = name
        self.channels_last = False  # wanted layout, applied by reshape
        self._allocated_channels_last = False
        self.data = xp.zeros(tuple(int(d) for d in shape), self.dtype)
        self._diff = None

    @property
    def diff(self):
        if self._diff is None:
            self._diff = self._zeros(self.shape, self._allocated_channels_last)
        return self._diff

    @diff.setter
    def diff(self, value) -> None:
        self._diff = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def count(self) -> int:
        return int(self.data.size)

    def reshape(self, shape) -> None:
        """Reallocate (zeroed) when the shape or layout changes; keep the arrays otherwise."""
        shape = tuple(int(d) for d in shape)
        last = self.channels_last and len(shape) == 4
        if shape != self.shape or last != self._allocated_channels_last:
            self.data = self._zeros(shape, last)
            self._diff = None
            self._allocated_channels_last = last

    def _zeros(self, shape: tuple[int, ...], channels_last: bool):
        if not channels_last:
            return self.xp.zeros(shape, self.dtype)
        n, c, h, w = shape
        return self.xp.zeros((n, h, w, c), self.dtype).transpose(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"Blob({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def nhwc(array):
    """An NCHW array seen channels-last: contiguous when its blob is `channels_last`."""
    return array.transpose(0, 2, 3, 1)


class LayerSetupError(ValueError):
    """A layer's parameters or bottom shapes are not what it needs."""


class Layer:
    """Base of all layers; subclasses register under Caffe's type string."""

    type: ClassVar[str] = ""
    #: loss layers get loss_weight 1 on their first top unless the net says otherwise
    is_loss: ClassVar[bool] = False
    #: (min, max) bottoms and tops; None = no bound
    num_bottom: ClassVar[tuple[int | None, int | None]] = (None, None)
    num_top: ClassVar[tuple[int | None, int | None]] = (None, None)
    #: tops are best kept channels-last (see Blob); the net decides
    prefers_channels_last: ClassVar[bool] = False
    #: bottoms may be channels-last: the layer never writes through a reshape of them
    accepts_channels_last: ClassVar[bool] = False

    def __init__(self, param: caffe_pb2.LayerParameter, phase: int = caffe_pb2.TRAIN,
                 xp=np, rng: np.random.Generator | None = None, dtype=np.float32):
        self.param = param
        self.name = param.name
        self.phase = phase
        self.xp = xp
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.dtype = np.dtype(dtype)
        self.blobs: list[Blob] = []

    # -- the Caffe contract -------------------------------------------------
    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Read parameters, create learnable blobs. Default: nothing."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise NotImplementedError

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise NotImplementedError

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        """Default: a layer with nothing to propagate."""

    # -- resumable state (data position, ...) ---------------------------------
    def get_state(self) -> dict:
        """JSON-serialisable state that a resumed run needs to continue exactly."""
        return {}

    def set_state(self, state: dict) -> None:
        """Restore what `get_state` returned."""

    # -- helpers ---------------------------------------------------------------
    def error(self, message: str) -> LayerSetupError:
        return LayerSetupError(f"layer {self.name!r} ({self.type}): {message}")

    def check_counts(self, bottom: list[Blob], top: list[Blob]) -> None:
        for what, blobs, (lo, hi) in (("bottom", bottom, self.num_bottom),
                                      ("top", top, self.num_top)):
            n = len(blobs)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                want = str(lo) if lo == hi else f"{lo or 0}..{'any' if hi is None else hi}"
                raise self.error(f"takes {want} {what} blob(s), got {n}")

    def weight_and_bias(self, weight_shape: tuple[int, ...], bias_size: int | None,
                        weight_filler: caffe_pb2.FillerParameter,
                        bias_filler: caffe_pb2.FillerParameter) -> None:
        """Create the weight (and bias) blobs, or check the shapes of ones already given."""
        want = [tuple(weight_shape)] + ([(bias_size,)] if bias_size is not None else [])
        if self.blobs:
            got = [b.shape for b in self.blobs]
            if got != want:
                raise self.error(f"learnable blobs have shapes {got}, expected {want}")
            return
        self.blobs = [self.make_blob(want[0], weight_filler)]
        if bias_size is not None:
            self.blobs.append(self.make_blob(want[1], bias_filler))

    def make_blob(self, shape, filler: caffe_pb2.FillerParameter | None = None) -> Blob:
        """A learnable blob, filled by `filler` (see pipeline_lib.fillers)."""
        from pipeline_lib.fillers import fill

        blob = Blob(shape, self.xp, self.dtype)
        if filler is not None:
            blob.data[...] = self.xp.asarray(fill(filler, blob.shape, self.rng, self.dtype))
        return blob


LAYER_TYPES: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make `cls` the implementation of `cls.type`."""
    if not cls.type:
        raise TypeError(f"{cls.__name__} has no type string")
    LAYER_TYPES[cls.type] = cls
    return cls


def layer_class(type_name: str) -> type[Layer]:
    """The class for a Caffe layer type string, with an error listing known types."""
    import pipeline_lib.layers  # noqa: F401  (imports every layer module)

    try:
        return LAYER_TYPES[type_name]
    except KeyError:
        known = ", ".join(sorted(LAYER_TYPES))
        raise ValueError(f"unknown layer type {type_name!r}; known types: {known}") from None
