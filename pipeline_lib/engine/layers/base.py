"""The Layer base class and the registry of layer types.

Layers follow Caffe's contract: `setup` reads the layer's parameters and
creates learnable blobs, `reshape` sets top shapes from bottom shapes,
`forward` writes tops, `backward` writes bottom diffs (`=`) and *adds* to
the diffs of its learnable blobs (`+=`, so shared weights and `iter_size`
accumulate; the solver zeroes them). Arrays are NCHW, as in Caffe.
Blobs (and their channels-last layout) are in pipeline_lib.core.blob.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import numpy as np

from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob
from pipeline_lib.proto import caffe_pb2


class LayerSetupError(ValueError):
    """A layer's parameters or bottom shapes are not what it needs."""


class ImageWork(NamedTuple):
    """A forward or backward cut by images: `work(a, b)` writes what images a..b give (tops,
    or bottom diffs; a later layer of the same split reads them at once); `finish()` runs
    once after every part is done and writes nothing another layer of the split reads.
    A part must hold at least `least` images (fewer could change the bits: a GEMM's
    rows); alone, the layer cuts only parts of `worth` images or more (smaller ones
    would not pay for a lane's wake-up)."""

    work: Callable[[int, int], None]
    least: int
    worth: int
    finish: Callable[[], None]
    #: cuts between parts fall on multiples of this (fixed blocks of a weight gradient)
    align: int = 1

    @staticmethod
    def run(xp, n: int, works: list[ImageWork]) -> None:
        """Works over the same n images as one split: each lane takes its images through
        every work in order (parts of at least every `least` images, cut at a multiple of
        every `align`, worth a wake-up for at least one of them), then each `finish`."""
        def images(a: int, b: int) -> None:
            for w in works:
                w.work(a, b)

        grain = max(max(w.least for w in works), min(w.worth for w in works))
        lanes.split(xp, n, images, grain, math.lcm(*(w.align for w in works)))
        for w in works:
            w.finish()


class Layer:
    """Base of all layers; subclasses register under Caffe's type string."""

    type: ClassVar[str] = ""
    #: loss layers get loss_weight 1 on their first top unless the net says otherwise, and
    #: an unnamed top when the net gives them fewer than num_top[0] (Caffe's AutoTopBlobs)
    is_loss: ClassVar[bool] = False
    #: (min, max) bottoms and tops; None = no bound. The net checks them (check_counts).
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

    def backward_images(self, top: list[Blob], propagate_down: list[bool],
                        bottom: list[Blob]) -> ImageWork | None:
        """This backward as work over ranges of images, as `forward_images`. None (the
        default): call `backward`."""
        return None

    def forward_images(self, bottom: list[Blob], top: list[Blob]) -> ImageWork | None:
        """This forward as work over ranges of the batch's images, so that the net can run
        it with its neighbours in one split (fewer hand-overs to the lanes): every array the
        work writes is made before returning. None (the default): call `forward`."""
        return None

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
        """Refuse blob counts outside num_bottom/num_top; the net calls it as it adds the layer."""
        for what, blobs, (lo, hi) in (("bottom", bottom, self.num_bottom),
                                      ("top", top, self.num_top)):
            n = len(blobs)
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                want = str(lo) if lo == hi else f"{lo or 0}..{'any' if hi is None else hi}"
                raise self.error(f"takes {want} {what} blob(s), got {n}")

    def allow_force_backward(self, bottom_index: int) -> bool:
        """Whether the net's force_backward may ask this bottom for a gradient: not a loss
        layer's labels (its second bottom) unless the layer says otherwise, as in Caffe."""
        return not (self.is_loss and bottom_index == 1)

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
        """A learnable blob, filled by `filler` (see pipeline_lib.engine.fillers); a 0-axis
        blob (a scalar, count 1 as in Caffe) is filled as one value."""
        from pipeline_lib.engine.fillers import fill

        blob = Blob(shape, self.xp, self.dtype)
        if filler is not None:
            values = fill(filler, blob.shape or (1,), self.rng, self.dtype)
            blob.data[...] = self.xp.asarray(values.reshape(blob.shape))
        return blob


LAYER_TYPES: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make `cls` the implementation of `cls.type`."""
    if not cls.type:
        raise TypeError(f"{cls.__name__} has no type string")
    LAYER_TYPES[cls.type] = cls
    return cls


def layer_class(type_name: str) -> type[Layer]:
    """The class for a Caffe layer type string, with an error naming the likely one meant
    (types are case-sensitive in Caffe) or, failing that, listing the known types."""
    import difflib

    import pipeline_lib.engine.layers  # noqa: F401  (imports every layer module)

    try:
        return LAYER_TYPES[type_name]
    except KeyError:
        same_letters = [t for t in LAYER_TYPES if t.lower() == type_name.lower()]
        close = same_letters or difflib.get_close_matches(type_name, LAYER_TYPES, n=1)
        if close:
            raise ValueError(f"unknown layer type {type_name!r}; did you mean {close[0]!r}? "
                             "(layer types are case-sensitive)") from None
        known = ", ".join(sorted(LAYER_TYPES))
        raise ValueError(f"unknown layer type {type_name!r}; known types: {known}") from None
