"""LeNet training speed: our engine against PyTorch, side by side in one run.

    python bench/lenet_train.py [--iterations 300] [--warmup 30] [--gpu] [--no-torch]

Trains the tutorial's LeNet (models/lenet, batch 64, SGD momentum 0.9, weight decay
5e-4, inv policy) on MNIST from data/mnist/mnist_train_lmdb when it exists, else on
random digits of the same shape, and prints ms per iteration (median and mean over the
timed iterations), images/s, peak RSS, and our time divided by PyTorch's. PyTorch is a
benchmark-only dependency (`pip install torch==2.13.0`, CPU build); it runs the same
net and update rule with `ceil_mode=True` pooling, as Caffe's.
Anchors on this kind of machine (2 vCPU): Caffe 25.1 ms, PyTorch 18.7 ms per iteration.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline_lib.backend import get_xp  # noqa: E402
from pipeline_lib.metrics import MetricsTable  # noqa: E402
from pipeline_lib.proto.prototxt import read_net, read_solver  # noqa: E402
from pipeline_lib.solver import Solver  # noqa: E402

SOLVER = ROOT / "models/lenet/lenet_solver.prototxt"
TRAIN_DB = ROOT / "data/mnist/mnist_train_lmdb"


def lenet_solver(iterations: int, use_db: bool):
    sp = read_solver(SOLVER)
    net = read_net(ROOT / sp.net)
    sp.ClearField("net")
    sp.max_iter = iterations
    sp.test_interval = 0
    sp.ClearField("test_iter")
    sp.display = 0
    sp.snapshot = 0
    sp.snapshot_after_train = False
    keep = [lp for lp in net.layer if not any(r.phase == 1 for r in lp.include)]
    del net.layer[:]
    net.layer.extend(keep)
    for lp in net.layer:
        if lp.type == "Data":
            if use_db:
                lp.data_param.source = str(TRAIN_DB)
            else:
                tops = list(lp.top)
                lp.ClearField("data_param")
                lp.ClearField("transform_param")
                lp.type = "DummyData"
                lp.dummy_data_param.shape.add().dim.extend([64, 1, 28, 28])
                lp.dummy_data_param.data_filler.add(type="uniform", min=0, max=1)
                lp.dummy_data_param.shape.add().dim.extend([64])
                lp.dummy_data_param.data_filler.add(type="constant", value=3)
                assert tops == ["data", "label"]
    sp.net_param.CopyFrom(net)
    return sp


def time_ours(iterations: int, warmup: int, gpu: bool, use_db: bool) -> list[float]:
    xp = get_xp("GPU" if gpu else "CPU")
    solver = Solver(lenet_solver(warmup + iterations, use_db), xp=xp, metrics=MetricsTable(),
                    log=_quiet_logger())
    times = []
    solver.step(warmup)
    for _ in range(iterations):
        start = time.perf_counter()
        solver.step(1)
        if gpu:
            xp.cuda.Device().synchronize()
        times.append((time.perf_counter() - start) * 1000)
    solver.close()
    return times


def _quiet_logger():
    from pipeline_lib.glog import GlogLogger

    return GlogLogger(None, stderr=False)


def time_torch(iterations: int, warmup: int, gpu: bool) -> list[float] | None:
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if gpu else "cpu"
    net = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10)).to(device)
    groups = [{"params": [p for n, p in net.named_parameters() if n.endswith("weight")],
               "lr_mult": 1.0},
              {"params": [p for n, p in net.named_parameters() if n.endswith("bias")],
               "lr_mult": 2.0}]
    velocity = {p: torch.zeros_like(p) for g in groups for p in g["params"]}
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(64, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (64,), device=device)
    times = []
    for it in range(warmup + iterations):
        start = time.perf_counter()
        lr = 0.01 * (1 + 1e-4 * it) ** -0.75
        net.zero_grad(set_to_none=False)
        loss = loss_fn(net(x), y)
        loss.backward()
        with torch.no_grad():
            for g in groups:
                for p in g["params"]:
                    v = velocity[p]
                    v.mul_(0.9).add_(p.grad + 5e-4 * p, alpha=lr * g["lr_mult"])
                    p.sub_(v)
        if gpu:
            torch.cuda.synchronize()
        if it >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return times


def summary(name: str, times: list[float]) -> str:
    med, mean = statistics.median(times), statistics.fmean(times)
    return f"{name:<22}{med:>10.2f}{mean:>10.2f}{64000 / med:>12.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="random data, no LMDB")
    args = parser.parse_args()
    use_db = TRAIN_DB.is_dir() and not args.synthetic
    ours = time_ours(args.iterations, args.warmup, args.gpu, use_db)
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    theirs = None if args.no_torch else time_torch(args.iterations, args.warmup, args.gpu)
    print(f"LeNet training, batch 64, {'GPU' if args.gpu else 'CPU'}, {os.cpu_count()} cores, "
          f"data: {'MNIST LMDB' if use_db else 'synthetic'}, {args.iterations} timed iterations")
    print(f"{'':<22}{'median ms':>10}{'mean ms':>10}{'images/s':>12}")
    print(summary("pipeline_lib", ours))
    print(f"peak RSS after ours: {rss_ours:.0f} MB")
    if theirs:
        print(summary("PyTorch", theirs))
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"ours / PyTorch (median): {ratio:.2f}")
    print(f"ours / Caffe anchor 25.1 ms: {statistics.median(ours) / 25.1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
