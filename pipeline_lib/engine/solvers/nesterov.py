"""Nesterov's accelerated gradient, Caffe's form:
v_new = momentum * v + local_rate * g; update = (1 + momentum) * v_new - momentum * v.
"""

from __future__ import annotations

from pipeline_lib.engine.solvers.base import UpdateRule, register


@register
class Nesterov(UpdateRule):
    type = "Nesterov"

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        g, v, v_old = (self.part(a) for a in (self.params[i].diff, self.history[i],
                                                  self._scratch[i]))
        xp = self.params[i].xp
        v_old[...] = v
        v *= self.momentum
        g *= local_rate
        v += g
        xp.multiply(v, 1.0 + self.momentum, out=g)
        v_old *= self.momentum
        g -= v_old
