"""One speed table for the engine: training against PyTorch, per layer, data tools, memory.

    python bench/run_all.py [--iterations 200] [--warmup 20] [--records 20000] [--gpu]
                            [--no-torch] [--data lmdb|memory]

Prints, in one run so that the ratios are taken under the same load:
- LeNet training (models/lenet, batch 64) ms per iteration and images/s, ours
  and PyTorch's taking turns every 25 iterations (bench/lenet_train.py), and our
  time over PyTorch's;
- per-layer forward/backward ms of the train net on dummy data (`time_net`,
  as `pcaffe time`);
- MNIST conversion records/s (`convert_mnist` to LMDB, on generated digits)
  and image-mean records/s (`compute_image_mean` over that database);
- peak RSS of this process after our warm-up (PyTorch is loaded after it).

The machine is shared: the load average is printed first, and training times
are given as the median and the 20th percentile (less sensitive to other
processes). Both use `--threads` threads (default: every usable CPU): ours as lanes,
PyTorch's through torch.set_num_threads. Anchors (2 vCPU): Caffe 25.1 ms, PyTorch 18.7 ms
per iteration.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lenet_train  # beside this file: `python bench/run_all.py` puts bench/ on sys.path
import numpy as np

from pipeline_lib.core.threads import compute_threads, usable_cpus
from pipeline_lib.data.convert import convert_mnist
from pipeline_lib.data.idx import write_idx
from pipeline_lib.data.mean import compute_image_mean
from pipeline_lib.engine.training.provenance import host_info

ROOT = Path(__file__).resolve().parents[1]

CAFFE_MS = 25.1


def p20(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[len(ordered) // 5]


def training_rows(args) -> list[str]:
    use_db = lenet_train.TRAIN_DB.is_dir() and args.data == "lmdb"
    ours, theirs, rss = lenet_train.measure(args.iterations, args.warmup, args.gpu, use_db,
                                            not args.no_torch, args.threads)
    rows = [f"LeNet training, batch 64, {'GPU' if args.gpu else 'CPU'}, data of ours: "
            f"{'MNIST LMDB' if use_db else 'one batch in memory'}, "
            f"{args.iterations} timed iterations"
            + (", ours and PyTorch taking turns every 25" if theirs else ""),
            f"{'':<16}{'median ms':>10}{'p20 ms':>9}{'images/s':>10}{'vs Caffe':>10}"]
    for name, times in (("pipeline_lib", ours), ("PyTorch", theirs)):
        if times:
            med = statistics.median(times)
            rows.append(f"{name:<16}{med:>10.2f}{p20(times):>9.2f}{64000 / med:>10.0f}"
                        f"{med / CAFFE_MS:>10.2f}")
    if theirs:
        ratio = statistics.median(ours) / statistics.median(theirs)
        rows.append(f"ours / PyTorch: median {ratio:.2f}, p20 {p20(ours) / p20(theirs):.2f}")
    rows.append(f"peak RSS after our warm-up (before PyTorch loads): {rss:.0f} MB "
                "(Caffe anchor 122 MB, whole run with tests)")
    return rows


def layer_rows(args) -> list[str]:
    from pipeline_lib.api import load_net
    from pipeline_lib.core.backend import Device
    from pipeline_lib.engine.timing import time_net
    from pipeline_lib.proto import caffe_pb2

    net = load_net(str(ROOT / "models/lenet/lenet_train_test.prototxt"), None, caffe_pb2.TRAIN,
                   device=Device.GPU if args.gpu else Device.CPU, dummy_data=(1, 28, 28))
    try:
        return ["Per layer (train net, dummy data, mean of 50 passes)",
                time_net(net, iterations=50).table()]
    finally:
        net.close()


def data_rows(records: int) -> list[str]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = Path(tmp, "images.idx"), Path(tmp, "labels.idx")
        write_idx(rng.integers(0, 256, (records, 28, 28), dtype=np.uint8), images)
        write_idx(rng.integers(0, 10, records, dtype=np.uint8), labels)
        db = Path(tmp, "db")
        start = time.perf_counter()
        convert_mnist(images, labels, db, backend="lmdb")
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        compute_image_mean(db)
        mean_s = time.perf_counter() - start
    return [f"MNIST conversion to LMDB: {records / convert_s:,.0f} records/s ({records} records;"
            f" Caffe's convert_mnist_data ~200,000/s)",
            f"image mean over LMDB:     {records / mean_s:,.0f} records/s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--data", choices=["lmdb", "memory"], default="lmdb",
                        help="where our LeNet batches come from (see lenet_train)")
    parser.add_argument("--threads", type=int, default=usable_cpus(),
                        help="our lanes and PyTorch's threads (default: every usable CPU)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"CPU: {host_info()['cpu_model']}; {args.threads} threads; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with compute_threads(args.threads):
        blocks = (training_rows(args), layer_rows(args), data_rows(args.records))
    for block in blocks:
        print()
        print("\n".join(block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
