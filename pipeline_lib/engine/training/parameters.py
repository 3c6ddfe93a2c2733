"""The SolverParameter a Solver runs: in-memory patches, the checks made before any net
is built, and where its metrics go."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import text_format

from pipeline_lib.core import glog
from pipeline_lib.engine.solvers import SolverParameterError
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.proto import caffe_pb2


def patched(solver_param: caffe_pb2.SolverParameter,
            net_param: caffe_pb2.NetParameter | None = None,
            snapshot_prefix: str | None = None, stages: Iterable[str] | None = None,
            level: int | None = None) -> caffe_pb2.SolverParameter:
    """A copy of `solver_param` with, when given: `net_param` replacing the generic net
    (e.g. a net whose data sources were patched in memory), `snapshot_prefix`, and
    `stages`/`level` added to `train_state` (as `caffe train --stage/--level` does)."""
    sp = caffe_pb2.SolverParameter()
    sp.CopyFrom(solver_param)
    if net_param is not None:
        if sp.HasField("train_net") or sp.HasField("train_net_param"):
            raise SolverParameterError("net_param= replaces the solver's generic net, but "
                                       "this solver names a train_net; patch that instead")
        sp.ClearField("net")
        sp.net_param.CopyFrom(net_param)
    if snapshot_prefix is not None:
        sp.snapshot_prefix = str(snapshot_prefix)
    if level is not None:
        sp.train_state.level = int(level)
    for stage in stages or ():
        sp.train_state.stage.append(stage)
    return sp


def default_snapshot_prefix(solver_path: str | os.PathLike) -> str:
    """Where snapshots go when the solver sets no snapshot_prefix: the solver file's path
    without its suffix, as Caffe does."""
    return str(Path(solver_path).with_suffix(""))


def run_seed(sp: caffe_pb2.SolverParameter) -> int:
    """The seed of the run's one Generator: `random_seed`, or 0 for Caffe's -1 ("from the
    system's entropy"), so runs are reproducible by default."""
    return int(sp.random_seed) if sp.random_seed >= 0 else 0


def check_solver(sp: caffe_pb2.SolverParameter, log: glog.GlogLogger) -> None:
    """Refuse what cannot run and log the parameters as Caffe does."""
    check_solver_values(sp)
    log.info("Initializing solver from parameters: \n" + text_format.MessageToString(sp))
    check_snapshot_prefix(sp)


def check_solver_values(sp: caffe_pb2.SolverParameter) -> None:
    """Refuse counts and formats that cannot run (before anything is built or written)."""
    if sp.average_loss < 1:
        raise SolverParameterError(f"average_loss must be >= 1, got {sp.average_loss}")
    if sp.iter_size < 1:
        raise SolverParameterError(f"iter_size must be >= 1, got {sp.iter_size}")
    for field in ("max_iter", "display", "snapshot", "test_interval"):
        if getattr(sp, field) < 0:
            raise SolverParameterError(f"{field} must be >= 0, got {getattr(sp, field)}")
    if any(n < 1 for n in sp.test_iter):
        raise SolverParameterError(f"test_iter must be >= 1 (batches per test), got "
                                   f"{', '.join(map(str, sp.test_iter))}")
    if sp.snapshot_format != caffe_pb2.SolverParameter.BINARYPROTO:
        raise SolverParameterError("snapshot_format HDF5 is not supported; use BINARYPROTO")


def check_snapshot_prefix(sp: caffe_pb2.SolverParameter) -> None:
    """Fail before training, not after it, when snapshots cannot be written."""
    if not sp.snapshot and not sp.snapshot_after_train:
        return
    if not sp.snapshot_prefix:
        why = f"snapshot: {sp.snapshot}" if sp.snapshot else "snapshot_after_train"
        raise SolverParameterError(
            f"the solver will write snapshots ({why}) but sets no snapshot_prefix; set "
            "snapshot_prefix (or snapshot: 0 and snapshot_after_train: false)")
    parent = Path(sp.snapshot_prefix).parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise SolverParameterError(
            f"cannot write to snapshot prefix {sp.snapshot_prefix!r}; make sure that the "
            f"directory {str(parent)!r} exists and is writable")


def metrics_table(metrics: MetricsTable | str | os.PathLike | None,
                  snapshot_prefix: str) -> MetricsTable:
    """`metrics` as a table; None means `<snapshot_prefix>_metrics.csv` (in memory only
    without a prefix)."""
    if isinstance(metrics, MetricsTable):
        table = metrics
    elif metrics is not None:
        table = MetricsTable(metrics)
    else:
        table = MetricsTable(f"{snapshot_prefix}_metrics.csv" if snapshot_prefix else None)
    if table.path is not None and not table.path.parent.is_dir():
        raise SolverParameterError(f"the metrics file {str(table.path)!r} is in a "
                                   "directory that does not exist")
    return table
