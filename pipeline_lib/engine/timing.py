"""Per-layer forward/backward timing of a net (the `time` command, like `caffe time`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline_lib.engine.net import Net


@dataclass(frozen=True)
class LayerTiming:
    name: str
    type: str
    forward_ms: float
    backward_ms: float


@dataclass(frozen=True)
class NetTiming:
    layers: list[LayerTiming]
    forward_ms: float
    backward_ms: float
    iterations: int
    batch_size: int

    @property
    def forward_backward_ms(self) -> float:
        return self.forward_ms + self.backward_ms

    def table(self) -> str:
        rows = [f"{'layer':<24}{'type':<18}{'forward ms':>12}{'backward ms':>13}"]
        rows += [f"{t.name:<24}{t.type:<18}{t.forward_ms:>12.3f}{t.backward_ms:>13.3f}"
                 for t in self.layers]
        rows.append(f"{'total':<42}{self.forward_ms:>12.3f}{self.backward_ms:>13.3f}")
        rows.append(f"forward-backward: {self.forward_backward_ms:.3f} ms per batch of "
                    f"{self.batch_size} ({self.forward_backward_ms / max(1, self.batch_size):.3f} "
                    f"ms per item), mean of {self.iterations} iterations")
        return "\n".join(rows)


def _sync(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def time_net(net: Net, iterations: int = 50, warmup: int = 2) -> NetTiming:
    """Mean per-layer forward and backward milliseconds over `iterations` passes."""
    n = len(net.layers)
    fwd = np.zeros(n)
    bwd = np.zeros(n)
    for it in range(warmup + iterations):
        record = it >= warmup
        for i in range(n):
            start = time.perf_counter()
            net.forward_layer(i)
            _sync(net.xp)
            if record:
                fwd[i] += time.perf_counter() - start
        net.seed_loss_diffs()
        for i in range(n - 1, -1, -1):
            start = time.perf_counter()
            net.backward_layer(i)
            _sync(net.xp)
            if record:
                bwd[i] += time.perf_counter() - start
    scale = 1000.0 / iterations
    layers = [LayerTiming(name, layer.type, fwd[i] * scale, bwd[i] * scale)
              for i, (name, layer) in enumerate(zip(net.layer_names, net.layers))]
    first = next((b for b in net.blobs.values() if b.data.ndim), None)
    batch = first.shape[0] if first is not None else 0
    return NetTiming(layers, float(fwd.sum() * scale), float(bwd.sum() * scale), iterations, batch)
