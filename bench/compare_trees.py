"""Our LeNet step in two source trees (or one tree two ways), taking turns: which is faster.

    python bench/compare_trees.py A B [--threads 2] [--rounds 24] [--block 25]
    python bench/compare_trees.py ../before .                      # two checkouts
    python bench/compare_trees.py . .:PIPELINE_LIB_NUMBA=0         # one tree, kernels off

Each tree (optionally `tree:NAME=VALUE`, an environment variable for its trainers) gets
two long-lived trainers, started in the order A, B, B, A: on a shared virtual machine
the first process started ran 5-15% slower than the later ones for its whole life, so
each side has one early and one late start. The trainers take turns, `--block` steps at
a time, for `--rounds` rounds, so the machine's drifting speed slows both sides alike.
Prints each trainer's median and 20th percentile (ms per step) and the ratio of the
sides' medians, B / A. Both read the same MNIST LMDB (this tree's data/mnist, made by
`snakemake --cores 2 mnist`), or random digits without it; a tree must have this
version of bench/lenet_train.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DB = Path(__file__).resolve().parents[1] / "data/mnist/mnist_train_lmdb"


def serve(tree: str, threads: int, db: str) -> None:
    """A trainer: reads step counts on stdin, answers with the milliseconds of each step."""
    sys.path[:0] = [tree, os.path.join(tree, "bench")]
    import lenet_train

    from pipeline_lib.core.threads import compute_threads

    if db:
        lenet_train.TRAIN_DB = Path(db)
    with compute_threads(threads):
        step, close = lenet_train.ours_step(False, bool(db))
        for _ in range(20):
            step()
        print("ready", flush=True)
        for line in sys.stdin:
            if int(line) == 0:
                break
            times = []
            for _ in range(int(line)):
                start = time.perf_counter()
                step()
                times.append((time.perf_counter() - start) * 1000)
            print(" ".join(f"{t:.3f}" for t in times), flush=True)
        close()


def start(side: str, threads: int, db: str) -> subprocess.Popen:
    tree, _, setting = side.partition(":")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    if setting:
        name, _, value = setting.partition("=")
        env[name] = value
    proc = subprocess.Popen([sys.executable, __file__, "--serve", os.path.abspath(tree),
                             "--threads", str(threads), "--db", db],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"the trainer of {side} did not start (see its error above)")
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sides", nargs="*", help="two trees, each optionally tree:NAME=VALUE")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--db", default=str(DB) if DB.is_dir() else "", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.threads, args.db)
        return 0
    if len(args.sides) != 2:
        parser.error("give two sides, A and B")
    a, b = args.sides
    order = [a, b, b, a]
    trainers = [start(side, args.threads, args.db) for side in order]
    times: list[list[float]] = [[] for _ in order]
    for k in range(args.rounds):
        turn = list(range(len(order)))
        for j in turn[k % len(turn):] + turn[:k % len(turn)]:
            trainers[j].stdin.write(f"{args.block}\n")
            trainers[j].stdin.flush()
            times[j].extend(float(x) for x in trainers[j].stdout.readline().split())
    for proc in trainers:
        proc.stdin.write("0\n")
        proc.stdin.flush()
        proc.wait()
    print(f"LeNet step, {args.threads} threads, {'MNIST LMDB' if args.db else 'random digits'}, "
          f"{args.rounds} rounds of {args.block} steps per trainer")
    for n, (side, t) in enumerate(zip(order, times), 1):
        print(f"trainer {n} ({side}): median {statistics.median(t):6.2f} ms, "
              f"p20 {sorted(t)[len(t) // 5]:6.2f}")
    med = {side: statistics.median(times[i] + times[len(order) - 1 - i])
           for i, side in enumerate(order[:2])}
    print(f"A {a}: {med[a]:.2f} ms; B {b}: {med[b]:.2f} ms; B / A = {med[b] / med[a]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
