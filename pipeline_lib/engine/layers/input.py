"""Input: tops whose data the user sets (net.blobs[name].data[...] = x); no backward.

input_param.shape gives one shape for every top or one per top; without it the
tops keep whatever shape the user gives them.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import register
from pipeline_lib.engine.layers.data_layer import DataLayer
from pipeline_lib.proto import caffe_pb2


@register
class InputLayer(DataLayer):
    type = "Input"
    param_field = "input_param"
    num_top = (1, None)
    is_input = True

    @classmethod
    def batch_size_of(cls, lp: caffe_pb2.LayerParameter) -> int:
        shapes = lp.input_param.shape
        return int(shapes[0].dim[0] if shapes and shapes[0].dim else 0)

    @classmethod
    def set_batch_size(cls, lp: caffe_pb2.LayerParameter, n: int) -> None:
        for shape in lp.input_param.shape:
            shape.dim[0] = n

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        shapes = self.param.input_param.shape
        if len(shapes) not in (0, 1, len(top)):
            raise self.error(f"input_param gives {len(shapes)} shapes for {len(top)} tops; "
                             f"give one shape, one per top, or none")
        for i, t in enumerate(top):
            if shapes:
                t.reshape(tuple(shapes[0 if len(shapes) == 1 else i].dim))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass  # the user owns the tops' shapes after setup

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass
