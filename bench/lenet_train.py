"""LeNet training speed: our engine against PyTorch, side by side in one run.

    python bench/lenet_train.py [--iterations 300] [--warmup 30] [--threads N] [--gpu]
                                [--no-torch] [--data lmdb|memory]

Trains the tutorial's LeNet (models/lenet, batch 64, SGD momentum 0.9, weight decay
5e-4, inv policy) and prints ms per iteration (median and mean over the timed
iterations), images/s, peak RSS, and our time divided by PyTorch's. The two take turns
every 25 iterations, so a shared machine's changing speed affects both alike.

Data (`--data`): PyTorch always trains on one batch held in memory. With `lmdb` (the
default, when data/mnist/mnist_train_lmdb exists) ours reads MNIST from the LMDB through
its Data layer and prefetch thread, as a pipeline run does: the data path is part of our
step and not of PyTorch's. With `memory` ours also trains on one batch held in memory
(an Input layer set once), the like-for-like comparison of the two engines' step. The
batch is the LMDB's first 64 records when it exists, else random digits.

PyTorch is a benchmark-only dependency (`pip install torch==2.13.0`, CPU build); it runs
the same net and update rule with `ceil_mode=True` pooling, as Caffe's.
Both use `--threads` threads (default: every CPU): ours as lanes (core.threads), PyTorch's
through torch.set_num_threads. Our compiled kernels (extra [fast]) are used when numba is
installed; PIPELINE_LIB_NUMBA=0 runs the NumPy code instead, for a before/after.
Anchors on this kind of machine (2 vCPU): Caffe 25.1 ms, PyTorch 18.7 ms per iteration.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from pipeline_lib.core.backend import Device
from pipeline_lib.core.threads import compute_threads
from pipeline_lib.engine import kernels
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.engine.training.provenance import host_info
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto.prototxt import read_net, read_solver

ROOT = Path(__file__).resolve().parents[1]
SOLVER = ROOT / "models/lenet/lenet_solver.prototxt"
TRAIN_DB = ROOT / "data/mnist/mnist_train_lmdb"


def lenet_solver(iterations: int, use_db: bool):
    """The tutorial's solver for training only: its Data layer reads TRAIN_DB, or (without
    `use_db`) is an Input layer whose tops the caller sets."""
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
                assert list(lp.top) == ["data", "label"]
                lp.ClearField("data_param")
                lp.ClearField("transform_param")
                lp.ClearField("include")
                lp.type = "Input"
                lp.input_param.shape.add().dim.extend([64, 1, 28, 28])
                lp.input_param.shape.add().dim.extend([64])
    sp.net_param.CopyFrom(net)
    return sp


@functools.cache
def fixed_batch() -> tuple[np.ndarray, np.ndarray]:
    """64 MNIST images (scaled by the tutorial's transform_param) and labels: the first
    records of TRAIN_DB, or random digits without it. Read once, before our Data layer
    opens the LMDB (the library opens a database once per process)."""
    if TRAIN_DB.is_dir():
        from pipeline_lib.data.db import open_db
        from pipeline_lib.proto.datum import plain_batch

        (data,) = [lp for lp in read_net(ROOT / read_solver(SOLVER).net).layer
                   if lp.type == "Data" and not any(r.phase == 1 for r in lp.include)]
        with open_db(TRAIN_DB, "r") as reader:
            images, labels = plain_batch([value for _, value in reader.cursor().read(64)])
        scale = np.float32(data.transform_param.scale)
        return (images * scale).astype(np.float32), labels.astype(np.float32)
    rng = np.random.default_rng(0)
    return (rng.random((64, 1, 28, 28), np.float32),
            rng.integers(0, 10, 64).astype(np.float32))


def ours_step(gpu: bool, use_db: bool):
    """One LeNet training iteration of our engine per call (on TRAIN_DB, or on
    `fixed_batch` without `use_db`); and a function that stops it."""
    xp = (Device.GPU if gpu else Device.CPU).xp
    solver = Solver(lenet_solver(10**8, use_db), xp=xp, metrics=MetricsTable(),
                    log=_quiet_logger())
    if not use_db:
        for blob, values in zip((solver.net.blobs["data"], solver.net.blobs["label"]),
                                fixed_batch()):
            blob.data[...] = xp.asarray(values)

    def step() -> None:
        solver.step(1)
        if gpu:
            xp.cuda.Device().synchronize()

    return step, solver.close


def _quiet_logger():
    from pipeline_lib.core.glog import GlogLogger

    return GlogLogger(None, stderr=False)


def torch_step(gpu: bool, threads: int):
    """One iteration of the same net, update rule and lr policy in PyTorch per call, or None."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(threads)
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
    images, labels = fixed_batch()
    x = torch.from_numpy(images).to(device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    it = 0

    def step() -> None:
        nonlocal it
        lr = 0.01 * (1 + 1e-4 * it) ** -0.75
        it += 1
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

    return step


def timed(step, count: int) -> list[float]:
    """Milliseconds of each of `count` calls."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return times


def interleaved(steps: list, iterations: int, block: int = 25) -> list[list[float]]:
    """Time each step function `iterations` times, taking turns in blocks of `block`
    iterations, so that a machine whose speed drifts slows all of them alike."""
    times: list[list[float]] = [[] for _ in steps]
    while len(times[0]) < iterations:
        count = min(block, iterations - len(times[0]))
        for step, out in zip(steps, times):
            out.extend(timed(step, count))
    return times


def measure(iterations: int, warmup: int, gpu: bool, use_db: bool, with_torch: bool,
            threads: int) -> tuple[list[float], list[float] | None, float]:
    """ms per iteration of ours and of PyTorch (None without torch), timed taking turns,
    and our peak RSS in MB after the warm-up, before PyTorch is loaded."""
    if with_torch or not use_db:
        fixed_batch()  # before our Data layer holds the LMDB
    ours, close = ours_step(gpu, use_db)
    timed(ours, warmup)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    steps = [ours]
    theirs = torch_step(gpu, threads) if with_torch else None
    if theirs is not None:
        timed(theirs, warmup)
        steps.append(theirs)
    times = interleaved(steps, iterations)
    close()
    return times[0], (times[1] if theirs is not None else None), rss


def summary(name: str, times: list[float]) -> str:
    med, mean = statistics.median(times), statistics.fmean(times)
    return f"{name:<22}{med:>10.2f}{mean:>10.2f}{64000 / med:>12.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--data", choices=["lmdb", "memory"], default="lmdb",
                        help="where our batches come from (see the module; PyTorch's are "
                             "always one batch in memory)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="BLAS and PyTorch threads (default: every CPU)")
    args = parser.parse_args()
    use_db = TRAIN_DB.is_dir() and args.data == "lmdb"
    with compute_threads(args.threads):
        ours, theirs, rss_ours = measure(args.iterations, args.warmup, args.gpu, use_db,
                                         not args.no_torch, args.threads)
    fast = "on" if kernels.compiled(Device.CPU.xp) else "off"
    print(f"CPU: {host_info()['cpu_model']}; {args.threads} threads; compiled kernels {fast}")
    print(f"LeNet training, batch 64, {'GPU' if args.gpu else 'CPU'}, {os.cpu_count()} cores, "
          f"data of ours: {'MNIST LMDB' if use_db else 'one batch in memory'} (PyTorch: one "
          f"batch in memory), {args.iterations} timed iterations"
          + (", ours and PyTorch taking turns every 25" if theirs else ""))
    print(f"{'':<22}{'median ms':>10}{'mean ms':>10}{'images/s':>12}")
    print(summary("pipeline_lib", ours))
    print(f"peak RSS of ours (before PyTorch is loaded): {rss_ours:.0f} MB")
    if theirs is not None:
        print(summary("PyTorch", theirs))
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(f"ours / PyTorch (median): {ratio:.2f}")
    print(f"ours / Caffe anchor 25.1 ms: {statistics.median(ours) / 25.1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
