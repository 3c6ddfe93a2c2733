"""The "Data" layer: batches of `Datum` records from an LMDB or LevelDB database.

Records are read in key order with a database cursor and wrap around at the
end, as Caffe's DataLayer does, so only the records read are ever touched;
each batch goes through the DataTransformer (`transform_param`). A background
thread decodes and transforms `data_param.prefetch` batches ahead (0 turns it
off) so loading overlaps the solver's work; `forward` only adopts the ready
array as the top's data.

Results do not depend on the prefetch thread: the thread owns the cursor and
a Generator of the layer's own (seeded from the net's rng at setup), draws
the transform's randomness batch after batch in record order, and tags every
batch with the state that follows it: the position of the next record, its
key and the Generator's state. `get_state()` returns the tag of the last batch
the net consumed, so a snapshot taken between iterations restores exactly even
though the thread has read ahead; `set_state()` drops whatever was prefetched
and seeks to that key (a state without one steps from the first record). The
thread and the hand-over are PrefetchingDataLayer's (data_layer.py).

Caffe's schema defaults `data_param.backend` to LEVELDB (its converters
default to LMDB); we honour that default and say so when it does not match
the database on disk.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import numpy as np

from pipeline_lib.core.blob import Blob
from pipeline_lib.data.db import (
    DatabaseError,
    RecordCursor,
    RecordOutOfRange,
    detect_backend,
    open_db,
)
from pipeline_lib.data.transform import DataTransformer, TransformError
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.data_layer import Batch, PrefetchingDataLayer
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.datum import datum_to_array, plain_batch

_BACKEND_NAMES = {caffe_pb2.DataParameter.LEVELDB: "leveldb", caffe_pb2.DataParameter.LMDB: "lmdb"}
_BACKEND_WORDS = {"leveldb": "LEVELDB", "lmdb": "LMDB"}
UNMAP_BYTES = 4 << 20  # LMDB pages read before the file is mapped afresh (see RecordCursor)


class DataSourceError(ValueError):
    """A record or database the Data layer cannot use."""


def _found_backend(path: Path) -> str | None:
    """"lmdb" or "leveldb" for a database directory on disk, None when unrecognised."""
    try:
        return detect_backend(path)
    except DatabaseError:
        return None


class _BatchSource:
    """Reads, decodes and transforms batches in record order, through a RecordCursor.

    Owns the cursor and the Generator; exactly one thread uses it at a time.
    """

    def __init__(self, records: RecordCursor, transformer: DataTransformer,
                 gen: np.random.Generator, batch_size: int, dtype: np.dtype, where: str):
        self.records = records
        self.transformer = transformer
        self.gen = gen
        self.batch_size = batch_size
        self.dtype = dtype
        self.where = where

    def state(self) -> dict:
        # The key lets a resume seek straight to the record; latin-1 maps bytes 1:1 to text.
        return {"cursor": self.records.index, "key": self.records.key.decode("latin-1"),
                "rng": copy.deepcopy(self.gen.bit_generator.state)}

    def restore(self, state: dict) -> None:
        key = state.get("key")
        self.records.seek(int(state["cursor"]),
                          key.encode("latin-1") if isinstance(key, str) else None)
        self.gen.bit_generator.state = copy.deepcopy(state["rng"])

    def decode(self, key: bytes, value: bytes) -> tuple[bytes | np.ndarray, tuple, int]:
        """One record's pixels, their C x H x W shape and its label. The pixels of a plain
        uint8 Datum stay bytes (a batch of them is joined at once); others are decoded."""
        try:
            # a fresh message each time: a reused one keeps every parse's memory (upb arena)
            datum = caffe_pb2.Datum.FromString(value)
        except Exception as exc:  # DecodeError, or RuntimeError from some backends
            raise DataSourceError(f"{self.where} key {_show(key)}: corrupt record, "
                                  f"not a serialized Datum ({exc})") from None
        if datum.data and not datum.encoded:
            shape = (datum.channels, datum.height, datum.width)
            pixels = datum.data
            if len(pixels) != shape[0] * shape[1] * shape[2]:
                raise DataSourceError(
                    f"{self.where} key {_show(key)}: data has {len(pixels)} bytes, "
                    f"expected {shape[0]}x{shape[1]}x{shape[2]}")
            return pixels, shape, datum.label
        if datum.encoded:
            image = datum_to_array(datum, color=self.transformer.decode_color,
                                   where=f"{self.where} key {_show(key)}")
        else:
            image = datum_to_array(datum, where=f"{self.where} key {_show(key)}")
        return image, image.shape, datum.label

    def output_shape(self) -> tuple:
        """The top shape of a batch starting at the next record (the cursor stays)."""
        key, value = self.records.peek()
        shape = self.decode(key, value)[1]
        try:
            return self.transformer.output_shape(shape, self.batch_size)
        except TransformError as exc:
            raise DataSourceError(f"{self.where} key {_show(key)}: {exc}") from None

    def next_batch(self) -> Batch:
        """The next batch, transformed; after an error the cursor is back at its start."""
        start = (self.records.index, self.records.key)
        try:
            records = self.records.read(self.batch_size)
            images, labels = self._decode_batch(records)
            try:
                data = self.transformer.transform(images)
            except TransformError as exc:  # named by the batch's first record, as its shape is
                raise DataSourceError(f"{self.where} key {_show(records[0][0])}: {exc}") from None
        except BaseException:
            with contextlib.suppress(Exception):  # the record's own error says more
                self.records.seek(*start)
            raise
        return Batch(data, labels, self.state())

    def _decode_batch(self, records: list[tuple[bytes, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        plain = plain_batch([value for _, value in records])
        if plain is not None:  # Caffe's plain records, all alike: no parse per record
            return plain[0], plain[1].astype(self.dtype)
        labels = np.empty(len(records), self.dtype)
        pixels = []
        first = None
        for i, (key, value) in enumerate(records):
            image, shape, labels[i] = self.decode(key, value)
            if first is None:
                first = shape
            elif shape != first:
                raise DataSourceError(
                    f"{self.where} key {_show(key)}: image shape {shape} differs from {first} "
                    "of the batch's first record; a batch needs one size")
            pixels.append(image)
        if all(isinstance(p, bytes) for p in pixels):
            images = np.frombuffer(b"".join(pixels), np.uint8).reshape(len(pixels), *first)
        else:
            images = np.stack([np.frombuffer(p, np.uint8).reshape(first)
                               if isinstance(p, bytes) else p for p in pixels])
        return images, labels


def _show(key: bytes) -> str:
    return key.decode(errors="replace")


@register
class DatabaseLayer(PrefetchingDataLayer):
    """Caffe's "Data" layer: tops `data` and optionally `label` (as floats)."""

    type = "Data"
    param_field = "data_param"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        dp = self.param.data_param
        self.batch_size = self._batch_size()
        path, backend = self._locate_source(dp)
        self._open_resources()
        try:
            reader = open_db(str(path), "r", backend)
            self._res.closers.append(reader.close)
            cursor = reader.cursor(unmap_every=UNMAP_BYTES)
            self._res.closers.append(cursor.close)
        except Exception as exc:
            raise self.error(f"cannot open {_BACKEND_WORDS[backend]} database {str(path)!r} "
                             f"(data_param.source {dp.source!r}): {exc}") from None
        if cursor.empty:
            raise self.error(f"database {str(path)!r} holds no records")

        gen = self._own_generator()
        transformer = self._transformer(gen)
        where = f"{_BACKEND_WORDS[backend]} {str(path)!r}"
        source = _BatchSource(cursor, transformer, gen, self.batch_size, self.dtype, where)
        try:
            data_shape = source.output_shape()
        except ValueError as exc:
            raise self.error(str(exc)) from None
        if dp.rand_skip:
            source.records.skip(int(gen.integers(0, dp.rand_skip)))
        self._start(source, data_shape)

    def _locate_source(self, dp: caffe_pb2.DataParameter) -> tuple[Path, str]:
        path = self._source_path("the database to read")
        backend = _BACKEND_NAMES[dp.backend]
        found = _found_backend(path)
        if found is not None and found != backend:
            said = (f"data_param has backend: {_BACKEND_WORDS[backend]}"
                    if dp.HasField("backend") else
                    "data_param.backend is LEVELDB (Caffe's default when it is not set)")
            raise self.error(f"{dp.source!r} is a{'n' if found == 'lmdb' else ''} "
                             f"{_BACKEND_WORDS[found]} database, but {said}; add "
                             f"`backend: {_BACKEND_WORDS[found]}` to data_param")
        return path, backend

    # -- resumable state: {"cursor": the next record's index, "key": its key, "rng": the
    # layer's Generator state}, as _BatchSource.state gives it -----------------------------
    def set_state(self, state: dict) -> None:
        try:
            cursor = int(state["cursor"])
            rng_state = state["rng"]
        except (KeyError, TypeError, ValueError):
            raise self.error(f"saved state {state!r} lacks 'cursor' and 'rng'") from None
        try:
            self._restore({"cursor": cursor, "key": state.get("key"), "rng": rng_state})
        except RecordOutOfRange as exc:
            held = "" if exc.count is None else f"'s {exc.count} records"
            raise self.error(f"saved cursor {cursor} is outside the database{held} "
                             "(was the database rebuilt?)") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise self.error(f"saved random state does not fit this layer: {exc}") from None
