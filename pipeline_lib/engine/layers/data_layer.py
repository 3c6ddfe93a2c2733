"""The family of data layers (Data, ImageData, WindowData, HDF5Data, MemoryData, DummyData, Input).

`DataLayer` is their base: no bottoms, tops that are the net's data. Its class
methods answer, for a LayerParameter of the type, what the rest of the code
would otherwise keep lists of: the batch size and how to set it, the files the
layer reads (its `source`, its mean file), the transform_param it applies with
the deprecated fields of its own parameter folded in, and whether its tops are
inputs the user sets (Input). `data_layer_class`, `set_batch_size` and
`replace_data_layers` ask them for a whole net.

`PrefetchingDataLayer` (Caffe's BasePrefetchingDataLayer) serves batches of
(data, labels) from a `BatchSource`: a background thread reads and transforms
`data_param.prefetch` batches ahead (0 turns it off), each tagged with the
source's state once that batch is consumed, so `get_state` is exact however
far the thread has read and `set_state` drops what was prefetched.
"""

from __future__ import annotations

import copy
import os
import queue
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.data.transform import DataTransformer
from pipeline_lib.engine.layers.base import Layer, layer_class
from pipeline_lib.proto import caffe_pb2

#: deprecated fields of a data layer's own parameter that Caffe's upgrade moves to transform_param
OLD_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")


class DataLayer(Layer):
    """Base of the layers whose tops are the net's data; class methods describe a LayerParameter."""

    num_bottom = (0, 0)
    #: the layer's own field of LayerParameter, e.g. "data_param"
    param_field: ClassVar[str] = ""
    #: transform_param states how raw images become the tops (preprocessing reuses it)
    transforms: ClassVar[bool] = False
    #: the tops are inputs whose data the user sets (a deploy net's Input)
    is_input: ClassVar[bool] = False
    #: the tops are N x C x H x W images and an optional label read from files, so that
    #: `pcaffe time --dummy-data C,H,W` may stand in random data for them
    reads_images: ClassVar[bool] = False

    # -- what a LayerParameter of this type says ----------------------------------------
    @classmethod
    def own_param(cls, lp: caffe_pb2.LayerParameter):
        return getattr(lp, cls.param_field)

    @classmethod
    def batch_size_of(cls, lp: caffe_pb2.LayerParameter) -> int:
        """The number of items in a batch (0 when the parameter does not say)."""
        return int(cls.own_param(lp).batch_size)

    @classmethod
    def set_batch_size(cls, lp: caffe_pb2.LayerParameter, n: int) -> None:
        cls.own_param(lp).batch_size = n

    @classmethod
    def sources_of(cls, lp: caffe_pb2.LayerParameter) -> list[str]:
        """The database or listing file the layer reads (its parameter's `source`)."""
        if not cls.param_field:
            return []
        p = cls.own_param(lp)
        return [p.source] if "source" in p.DESCRIPTOR.fields_by_name and p.source else []

    @classmethod
    def mean_files_of(cls, lp: caffe_pb2.LayerParameter) -> list[str]:
        mean_file = lp.transform_param.mean_file if cls.transforms else ""
        return [mean_file] if mean_file else []

    @classmethod
    def transform_param_of(cls, lp: caffe_pb2.LayerParameter
                           ) -> caffe_pb2.TransformationParameter:
        """transform_param, with the deprecated fields of the layer's own parameter folded in
        as Caffe's upgrade does for old nets (Caffe ignores them in a new-style layer; we do
        not drop them). ValueError when both say a field and disagree."""
        tp = caffe_pb2.TransformationParameter()
        tp.CopyFrom(lp.transform_param)
        if not cls.param_field:
            return tp
        own = cls.own_param(lp)
        for field in OLD_TRANSFORM_FIELDS:
            if field not in own.DESCRIPTOR.fields_by_name or not own.HasField(field):
                continue
            if tp.HasField(field) and getattr(tp, field) != getattr(own, field):
                raise ValueError(f"{cls.param_field}.{field} and transform_param.{field} "
                                 f"disagree; keep only transform_param.{field}")
            setattr(tp, field, getattr(own, field))
        return tp

    # -- for the layer itself ----------------------------------------------------------------
    def _batch_size(self) -> int:
        n = self.batch_size_of(self.param)
        if n < 1:
            raise self.error(f"{self.param_field}.batch_size must be set to a positive number")
        return n

    def _source_path(self, what: str) -> Path:
        """The layer's `source`, as an absolute path (relative ones are to the working dir)."""
        source = self.own_param(self.param).source
        if not source:
            raise self.error(f"{self.param_field}.source is not set ({what})")
        path = Path(os.path.abspath(source))
        if not path.exists():
            raise self.error(f"{self.param_field}.source {source!r} does not exist "
                             f"(looked for {str(path)!r})")
        return path

    def _own_generator(self) -> np.random.Generator:
        """The layer's own Generator, seeded from the net's rng, so that its draws do not
        depend on other layers' use of rng."""
        return np.random.default_rng(int(self.rng.integers(0, 2**63 - 1)))

    def _transformer(self, gen: np.random.Generator) -> DataTransformer:
        try:
            return DataTransformer(self.transform_param_of(self.param), self.phase, gen,
                                   dtype=self.dtype)
        except (ValueError, OSError) as exc:
            raise self.error(str(exc)) from None


def data_layer_class(type_name: str) -> type[DataLayer] | None:
    """The data layer class registered for `type_name`; None for other types, known or not."""
    try:
        cls = layer_class(type_name)
    except ValueError:
        return None
    return cls if issubclass(cls, DataLayer) else None


def set_batch_size(net: caffe_pb2.NetParameter, batch: int) -> None:
    """Set the first dimension of every data layer's output."""
    for lp in net.layer:
        if (cls := data_layer_class(lp.type)) is not None:
            cls.set_batch_size(lp, batch)


def replace_data_layers(net: caffe_pb2.NetParameter, chw: list[int], batch: int | None) -> None:
    """Swap layers that read images for DummyData of the same tops (gaussian data, zero labels)."""
    if len(chw) != 3:
        raise ValueError(f"--dummy-data wants C,H,W, got {chw}")
    for lp in net.layer:
        cls = data_layer_class(lp.type)
        if cls is None or not cls.reads_images:
            continue
        n = batch or cls.batch_size_of(lp)
        crop = lp.transform_param.crop_size
        h, w = (crop, crop) if crop else chw[1:]
        tops = list(lp.top)
        lp.ClearField(cls.param_field)
        lp.ClearField("transform_param")
        lp.type = "DummyData"
        dp = lp.dummy_data_param
        dp.shape.add().dim.extend([n, chw[0], h, w])
        dp.data_filler.add(type="gaussian", std=1.0)
        if len(tops) > 1:
            dp.shape.add().dim.extend([n])
            dp.data_filler.add(type="constant", value=0)


# -- batches read ahead ----------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    data: np.ndarray
    labels: np.ndarray
    after: dict  # the source's state once this batch has been consumed


class BatchSource(Protocol):
    """Reads and transforms batches in order; exactly one thread uses it at a time."""

    def next_batch(self) -> Batch: ...

    def state(self) -> dict: ...

    def restore(self, state: dict) -> None: ...


class _Prefetcher:
    """A daemon thread that keeps up to `depth` batches of a BatchSource ready."""

    def __init__(self, source: BatchSource, depth: int, name: str):
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"prefetch-{name}", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._put(self._source.next_batch()):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def get(self) -> Batch:
        if self._failed is not None:
            raise self._failed
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._failed = item
            raise item
        return item

    def stop(self) -> None:
        self._stop.set()
        while True:  # unblock a put in progress
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()


class _Resources:
    """What must be released when the layer closes or is collected: the prefetch thread,
    then what the layer opened (closed in reverse order)."""

    def __init__(self):
        self.prefetcher: _Prefetcher | None = None
        self.closers: list = []

    def stop_prefetch(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.stop()
            self.prefetcher = None

    def close(self) -> None:
        self.stop_prefetch()
        while self.closers:
            self.closers.pop()()


class PrefetchingDataLayer(DataLayer):
    """Tops `data` and optionally `label` from a BatchSource, read `data_param.prefetch` ahead.

    A subclass's setup calls `_open_resources` first (registering what it opens in
    `self._res.closers`) and `_start` last.
    """

    num_top = (1, 2)
    transforms = True
    reads_images = True

    def _open_resources(self) -> None:
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.close)

    def _start(self, source: BatchSource, data_shape: tuple[int, ...]) -> None:
        self.prefetch = int(self.param.data_param.prefetch)
        self._source = source
        self._data_shape = data_shape
        self._consumed = source.state()

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape(self._data_shape)
        if len(top) > 1:
            top[1].reshape((self.batch_size,))

    def _next_batch(self) -> Batch:
        if self.prefetch <= 0:
            return self._source.next_batch()
        if self._res.prefetcher is None:
            self._res.prefetcher = _Prefetcher(self._source, self.prefetch, self.name)
        return self._res.prefetcher.get()

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        try:
            batch = self._next_batch()
        except ValueError as exc:  # a bad record: its message names the file and record
            raise self.error(str(exc)) from None
        _take(top[0], self.xp.asarray(batch.data))
        if len(top) > 1:
            _take(top[1], self.xp.asarray(batch.labels))
        self._consumed = batch.after

    # -- resumable state ---------------------------------------------------------
    def get_state(self) -> dict:
        return copy.deepcopy(self._consumed)

    def _restore(self, state: dict) -> None:
        """Drop what was prefetched and continue from `state`; on an error the layer stays
        where it was and the error is raised."""
        self._res.stop_prefetch()
        try:
            self._source.restore(state)
        except BaseException:
            self._source.restore(self._consumed)
            raise
        self._consumed = self._source.state()

    def close(self) -> None:
        """Stop the prefetch thread and close what the layer opened."""
        if hasattr(self, "_finalizer"):
            self._finalizer()


def _take(blob: Blob, array) -> None:
    """Make a fresh batch array the blob's data: adopted when its layout is the blob's (no
    copy: a large copy lets the prefetch thread take the GIL and keep it for a whole batch),
    copied into the blob's own array when its layout or dtype differs."""
    blob.reshape(array.shape)
    if array.strides == blob.data.strides and array.dtype == blob.data.dtype:
        blob.data = array
    else:
        blob.data[...] = array
