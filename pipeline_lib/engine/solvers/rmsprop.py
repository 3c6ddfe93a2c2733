"""RMSProp: h = rms_decay * h + (1 - rms_decay) * g^2;
update = local_rate * g / (sqrt(h) + delta). No momentum.
"""

from __future__ import annotations

from pipeline_lib.engine.solvers.base import SolverParameterError, UpdateRule, register


@register
class RMSProp(UpdateRule):
    type = "RMSProp"

    def __init__(self, sp, *args, **kwargs):
        super().__init__(sp, *args, **kwargs)
        self.rms_decay = float(sp.rms_decay)

    @classmethod
    def check(cls, sp) -> None:
        if sp.momentum != 0:
            raise SolverParameterError(f"RMSProp takes no momentum (got {sp.momentum})")
        if not 0 <= sp.rms_decay < 1:
            raise SolverParameterError(f"rms_decay must lie in [0, 1), got {sp.rms_decay}")

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        g, h, tmp = (self.part(a) for a in (self.params[i].diff, self.history[i],
                                              self._scratch[i]))
        xp = self.params[i].xp
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.rms_decay
        h *= self.rms_decay
        h += tmp
        xp.sqrt(h, out=tmp)
        tmp += self.delta
        xp.divide(g, tmp, out=tmp)
        xp.multiply(tmp, local_rate, out=g)
