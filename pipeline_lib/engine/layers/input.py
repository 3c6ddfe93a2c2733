"""Input: tops whose data the user sets (net.blobs[name].data[...] = x); no backward.

input_param.shape gives one shape for every top or one per top; without it the
tops keep whatever shape the user gives them.
"""

from __future__ import annotations

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, register


@register
class InputLayer(Layer):
    type = "Input"
    num_bottom = (0, 0)
    num_top = (1, None)

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.check_counts(bottom, top)
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
