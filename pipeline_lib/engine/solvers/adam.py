"""Adam (Kingma & Ba) as Caffe runs it, with t = iteration + 1:
m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2;
update = local_rate * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + delta).
b1 is `momentum`, b2 `momentum2`. History: all m, then all v.
"""

from __future__ import annotations

import math

from pipeline_lib.engine.solvers.base import UpdateRule, register


@register
class Adam(UpdateRule):
    type = "Adam"
    history_per_param = 2

    def __init__(self, sp, *args, **kwargs):
        super().__init__(sp, *args, **kwargs)
        self.momentum2 = float(sp.momentum2)

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        g, tmp = self.part(self.params[i].diff), self.part(self._scratch[i])
        m, v = self.part(self.history[i]), self.second_history(i)
        xp, b1, b2 = self.params[i].xp, self.momentum, self.momentum2
        t = iteration + 1
        correction = math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        xp.multiply(g, 1.0 - b1, out=tmp)
        m *= b1
        m += tmp
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v *= b2
        v += tmp
        xp.sqrt(v, out=tmp)
        tmp += self.delta
        xp.divide(m, tmp, out=tmp)
        xp.multiply(tmp, local_rate * correction, out=g)
