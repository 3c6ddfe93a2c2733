"""AdaGrad: h += g^2; update = local_rate * g / (sqrt(h) + delta). No momentum."""

from __future__ import annotations

from pipeline_lib.engine.solvers.base import SolverParameterError, UpdateRule, register


@register
class AdaGrad(UpdateRule):
    type = "AdaGrad"

    @classmethod
    def check(cls, sp) -> None:
        if sp.momentum != 0:
            raise SolverParameterError(f"AdaGrad takes no momentum (got {sp.momentum})")

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        g, h, tmp = (self.part(a) for a in (self.params[i].diff, self.history[i],
                                              self._scratch[i]))
        xp = self.params[i].xp
        xp.multiply(g, g, out=tmp)
        h += tmp
        xp.sqrt(h, out=tmp)
        tmp += self.delta
        xp.divide(g, tmp, out=tmp)
        xp.multiply(tmp, local_rate, out=g)
