"""AdaDelta (Zeiler 2012) with Caffe's learning rate on top:
hg = m * hg + (1 - m) * g^2;  u = g * sqrt((hu + delta) / (hg + delta));
hu = m * hu + (1 - m) * u^2;  update = local_rate * u.
History: the gradient histories of all params, then their update histories.
"""

from __future__ import annotations

from pipeline_lib.engine.solvers.base import UpdateRule, register


@register
class AdaDelta(UpdateRule):
    type = "AdaDelta"
    history_per_param = 2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scratch2 = [p.xp.empty_like(p.data) for p in self.params]

    def compute_update(self, i: int, local_rate: float, iteration: int) -> None:
        g, hg = self.part(self.params[i].diff), self.part(self.history[i])
        hu = self.second_history(i)
        tmp, tmp2 = self.part(self._scratch[i]), self.part(self._scratch2[i])
        xp, m = self.params[i].xp, self.momentum
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - m
        hg *= m
        hg += tmp
        xp.add(hu, self.delta, out=tmp)
        xp.add(hg, self.delta, out=tmp2)
        xp.divide(tmp, tmp2, out=tmp)
        xp.sqrt(tmp, out=tmp)
        g *= tmp
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - m
        hu *= m
        hu += tmp
        g *= local_rate
