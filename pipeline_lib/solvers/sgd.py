"""SGD with momentum: v = momentum * v + local_rate * g; update = v."""

from __future__ import annotations

from pipeline_lib.solvers.base import UpdateRule, register


@register
class SGD(UpdateRule):
    type = "SGD"

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        g, v = self.params[i].diff, self.history[i]
        v *= self.momentum
        g *= local_rate
        v += g
        g[...] = v
