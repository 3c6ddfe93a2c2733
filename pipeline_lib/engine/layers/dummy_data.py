"""DummyData: tops of given shapes filled by data_filler (constant 0 by default).

As in Caffe, tops with a constant filler are filled once at setup and tops with any
other filler are refilled on every forward (from the layer's Generator).
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.data_layer import DataLayer
from pipeline_lib.proto import caffe_pb2


@register
class DummyDataLayer(DataLayer):
    type = "DummyData"
    param_field = "dummy_data_param"
    num_top = (1, None)

    @classmethod
    def batch_size_of(cls, lp: caffe_pb2.LayerParameter) -> int:
        p = lp.dummy_data_param
        return int(p.shape[0].dim[0] if p.shape and p.shape[0].dim else p.num[0] if p.num else 0)

    @classmethod
    def set_batch_size(cls, lp: caffe_pb2.LayerParameter, n: int) -> None:
        for shape in lp.dummy_data_param.shape:
            shape.dim[0] = n

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.dummy_data_param
        n = len(top)
        if len(p.data_filler) not in (0, 1, n):
            raise self.error(f"{len(p.data_filler)} data_filler(s) for {n} tops; "
                             f"give 0, 1 or one per top")
        fillers = list(p.data_filler) or [caffe_pb2.FillerParameter(type="constant", value=0)]
        self.fillers = [fillers[0 if len(fillers) == 1 else i] for i in range(n)]
        self.shapes = self._shapes(n)
        for t, shape, filler in zip(top, self.shapes, self.fillers):
            t.reshape(shape)
            if filler.type == "constant":
                self._fill(t, filler)

    def _shapes(self, n: int) -> list[tuple[int, ...]]:
        p = self.param.dummy_data_param
        legacy = {"num": p.num, "channels": p.channels, "height": p.height, "width": p.width}
        if any(len(v) for v in legacy.values()):
            if len(p.shape):
                raise self.error("give shape or the legacy num/channels/height/width, not both")
            for field, values in legacy.items():
                if len(values) not in (1, n):
                    raise self.error(f"give {field} once or once per top ({n}); "
                                     f"got {len(values)}")
            return [tuple(int(v[0 if len(v) == 1 else i]) for v in legacy.values())
                    for i in range(n)]
        if len(p.shape) not in (1, n):
            raise self.error(f"give shape once or once per top ({n}); got {len(p.shape)}")
        return [tuple(int(d) for d in p.shape[0 if len(p.shape) == 1 else i].dim)
                for i in range(n)]

    def _fill(self, blob: Blob, filler: caffe_pb2.FillerParameter) -> None:
        from pipeline_lib.engine.fillers import fill

        blob.data[...] = self.xp.asarray(fill(filler, blob.shape, self.rng, blob.dtype))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t, shape in zip(top, self.shapes):
            t.reshape(shape)  # no-op (content kept) unless someone changed it

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        for t, filler in zip(top, self.fillers):
            if filler.type != "constant":
                self._fill(t, filler)
