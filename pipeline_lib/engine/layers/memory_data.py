"""MemoryData: serves batches from arrays the user hands over with `set_arrays`.

Batches are consecutive and wrap around at the end; the position is part of the
layer's state, so a resumed run continues with the batch it would have seen next.
As in Caffe, the arrays are used as given (transform_param is not applied) and
their length must be a multiple of batch_size.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.data_layer import DataLayer


@register
class MemoryDataLayer(DataLayer):
    type = "MemoryData"
    param_field = "memory_data_param"
    num_top = (2, 2)
    transforms = True  # as in Caffe, it says how the arrays handed over were prepared

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.memory_data_param
        self.batch_size = int(p.batch_size)
        self.item_shape = (int(p.channels), int(p.height), int(p.width))
        if self.batch_size <= 0 or min(self.item_shape) <= 0:
            raise self.error("memory_data_param needs positive batch_size, channels, height "
                             f"and width; got {self.batch_size}, {self.item_shape}")
        self.data = None
        self.labels = None
        self.pos = 0
        self.reshape(bottom, top)

    def set_arrays(self, data: np.ndarray, labels: np.ndarray) -> None:
        """Serve `data` (N x C x H x W) and `labels` (N).

        Serving starts with the first batch, or at the position restored by
        `set_state` when that came before the first `set_arrays`.
        """
        data, labels = to_host(data), to_host(labels)
        first = self.data is None
        if data.ndim != 4 or tuple(data.shape[1:]) != self.item_shape:
            raise self.error(f"data must be N x {' x '.join(map(str, self.item_shape))} "
                             f"(channels x height x width); got shape {tuple(data.shape)}")
        n = int(data.shape[0])
        if n == 0 or n % self.batch_size:
            raise self.error(f"the number of items ({n}) must be a positive multiple of "
                             f"batch_size {self.batch_size}")
        if labels.size != n:
            raise self.error(f"labels must hold one value per item ({n}); "
                             f"got shape {tuple(labels.shape)}")
        pos = self.pos if first else 0
        if pos >= n:
            raise self.error(f"restored position {pos} is outside the {n} items given")
        self.data = self.xp.asarray(data, dtype=self.dtype)
        self.labels = self.xp.asarray(labels, dtype=self.dtype).reshape(n)
        self.pos = pos

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        top[0].reshape((self.batch_size, *self.item_shape))
        top[1].reshape((self.batch_size,))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        if self.data is None:
            raise self.error("no data: call set_arrays(data, labels) before the first forward")
        end = self.pos + self.batch_size
        top[0].data[...] = self.data[self.pos:end]
        top[1].data[...] = self.labels[self.pos:end]
        self.pos = end % self.data.shape[0]

    def get_state(self) -> dict:
        return {"pos": self.pos}

    def set_state(self, state: dict) -> None:
        self.pos = int(state.get("pos", 0))
        if self.data is not None and not 0 <= self.pos < self.data.shape[0]:
            raise self.error(f"saved position {self.pos} is outside the {self.data.shape[0]} "
                             f"items now set")
