"""One training run as a file-to-file job: solver prototxt in, final snapshot out.

Used by the `train` rule and by `pcaffe train`. The run's parameters that
the workflow owns (iterations, where snapshots go) are patched into the
SolverParameter in memory, never into copies of the user's files; the
effective solver, with its net inlined, is written beside the model.

Intermediate snapshots go to `<stem>.snapshots/`, with a copy of the metrics
that a resume continues (the workflow deletes an interrupted job's outputs,
the metrics among them, before rerunning it); the final pair is moved to
`<stem>.caffemodel` / `<stem>.solverstate` only when training finished, so
an interrupted run never leaves a final-looking output, and `resume="auto"`
continues from the newest complete intermediate snapshot (exactly: see
pipeline_lib.engine.training.solver).

A finished run also gets `<stem>.provenance.json` (pipeline_lib.engine.training.provenance):
its inputs' digests, as hashed before training, and where, when and with
what software it ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from pipeline_lib.core import glog
from pipeline_lib.core.backend import get_xp
from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.engine.model_files import model_files
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.engine.training.provenance import RunRecord
from pipeline_lib.engine.training.signals import SignalHandler
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net, read_solver, write_prototxt


@dataclass(frozen=True)
class TrainResult:
    caffemodel: Path
    solverstate: Path
    iterations: int
    stopped_early: bool
    resumed_from: Path | None
    provenance: Path | None = None


def effective_solver(solver_path: str | os.PathLike, max_iter: int | None = None,
                     solver_mode: str | None = None) -> caffe_pb2.SolverParameter:
    """The solver with `max_iter`/`solver_mode` applied and its net inlined as `net_param`."""
    sp = read_solver(solver_path)
    if max_iter is not None:
        sp.max_iter = int(max_iter)
    if solver_mode is not None:
        sp.solver_mode = caffe_pb2.SolverParameter.SolverMode.Value(solver_mode.upper())
    if sp.net:
        sp.net_param.CopyFrom(read_net(sp.net))
        sp.ClearField("net")
    return sp


def latest_snapshot(snapshot_dir: Path, name: str) -> Path | None:
    """The newest `<name>_iter_<N>.solverstate` whose .caffemodel is beside it."""
    pattern = re.compile(rf"^{re.escape(name)}_iter_(\d+)\.solverstate$")
    best: tuple[int, Path] | None = None
    if not snapshot_dir.is_dir():
        return None
    for path in snapshot_dir.iterdir():
        m = pattern.match(path.name)
        if m and path.with_suffix(".caffemodel").is_file():
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), path)
    return best[1] if best else None


class MirroredMetrics(MetricsTable):
    """A run's metrics kept beside its snapshots, and mirrored to the output path.

    The copy beside the snapshots is what a resume continues from: the
    workflow deletes an interrupted job's outputs (the mirror) before it
    reruns the job, and the rows before the snapshot must survive that.
    """

    def __init__(self, path: str | os.PathLike, mirror: str | os.PathLike):
        super().__init__(path)
        self.mirror = Path(mirror)

    def write(self, path: str | os.PathLike | None = None) -> Path | None:
        written = super().write(path)
        if path is None:
            super().write(self.mirror)
        return written

    def resume(self, iteration: int) -> None:
        if not self.rows and not self.path.is_file() and self.mirror.is_file():
            earlier = MetricsTable(self.mirror)  # a snapshot folder from before this copy
            earlier.resume(iteration)
            self.rows = earlier.rows
        super().resume(iteration)


def run_fingerprint(effective_text: str, inputs: list[str | os.PathLike]) -> str:
    """What makes snapshots of this run resumable: the effective solver (net inlined,
    weights named) and the size and time of its input files.

    An LMDB counts by its data.mdb (reading it writes nothing). A LevelDB rewrites
    its own files when opened, so it counts by path only: a rebuilt LevelDB with
    other content is not noticed here (Snakemake still reruns the job).
    """
    digest = hashlib.sha256(effective_text.encode("utf-8"))
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            path = path / "data.mdb" if (path / "data.mdb").is_file() else None
        st = path.stat() if path is not None and path.exists() else None
        signature = (st.st_size, st.st_mtime_ns) if st else None
        digest.update(f"{item}\0{signature}\n".encode())
    return digest.hexdigest()


def claim_snapshot_dir(snapshot_dir: Path, name: str, fingerprint: str) -> bool:
    """Make `snapshot_dir` hold snapshots of this run only; False when stale ones were removed.

    Snapshots left by a run with another solver, net or data (the workflow reruns a
    job when those change) must not be resumed: they are deleted, with the metrics
    that went with them, and the run starts from iteration 0.
    """
    marker = snapshot_dir / "run.fingerprint"
    previous = marker.read_text().strip() if marker.is_file() else None
    stale = previous != fingerprint and any(snapshot_dir.glob(f"{name}_iter_*"))
    if stale:
        for path in [*snapshot_dir.glob(f"{name}_iter_*"), snapshot_dir / f"{name}_metrics.csv"]:
            path.unlink(missing_ok=True)
    atomic_write_bytes(marker, (fingerprint + "\n").encode())
    return not stale


def _discard_if_nothing_to_resume(snapshot_dir: Path, outputs: list[str | os.PathLike | None],
                                  created_dirs: list[Path]) -> None:
    """After a failed run: with no snapshot to resume from, remove what it wrote.

    A run that wrote snapshots (periodic ones, a `.diverged` one) keeps them,
    and its metrics and effective solver with them. `created_dirs`, deepest
    first, are removed when empty.
    """
    if not snapshot_dir.is_dir() or any(snapshot_dir.glob("*.solverstate")):
        return
    for path in outputs:
        if path is not None:
            Path(path).unlink(missing_ok=True)
    for directory in created_dirs:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty


def train(solver_path: str | os.PathLike, *, output_stem: str | os.PathLike | None = None,
          max_iter: int | None = None, solver_mode: str | None = None,
          resume: str | os.PathLike | None = None, weights: str | None = None,
          log_path: str | os.PathLike | None = None,
          metrics_path: str | os.PathLike | None = None,
          provenance_path: str | os.PathLike | None = None,
          config: Mapping[str, Any] | None = None,
          sigint_effect: str = "stop", sighup_effect: str = "snapshot") -> TrainResult:
    """Train from `solver_path`.

    output_stem: e.g. "results/lenet_iter_10000": the final snapshot becomes
        `<stem>.caffemodel` + `.solverstate`, the effective solver
        `<stem>.solver.prototxt`, the metrics `<stem>_metrics.csv`. Without it
        the solver's own snapshot_prefix is used, as `caffe train` does.
    resume: a .solverstate path, or "auto" for the newest snapshot of this run.
    weights: comma-separated .caffemodel files to start from (fine-tuning).
    provenance_path: where the run's provenance record goes (default with an
        output_stem: `<stem>.provenance.json`; without one: none).
    config: the workflow's config section for this run, kept in the record.
    """
    record = RunRecord(str(solver_path), config=config)
    inputs = model_files(solver_path)
    record.add_texts([inputs.solver, *inputs.nets])
    sp = effective_solver(solver_path, max_iter, solver_mode)
    if weights:
        del sp.weights[:]
        sp.weights.extend(w for w in weights.split(",") if w)
    name = Path(sp.snapshot_prefix or Path(solver_path).stem).name
    if output_stem is not None:
        stem = Path(output_stem)
        name = re.sub(r"_iter_\d+$", "", stem.name)
        snapshot_dir = stem.parent / f"{stem.name}.snapshots"
        created_dirs = [d for d in (snapshot_dir, *snapshot_dir.parents) if not d.exists()]
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        prefix = str(snapshot_dir / name)
        effective_path = stem.parent / f"{stem.name}.solver.prototxt"
        write_prototxt(sp, effective_path)
        metrics = metrics_path or stem.parent / f"{stem.name}_metrics.csv"
        running_metrics: Path | None = snapshot_dir / f"{name}_metrics.csv"
        table: MetricsTable | str | os.PathLike | None = MirroredMetrics(running_metrics,
                                                                          metrics)
        provenance_path = provenance_path or stem.parent / f"{stem.name}.provenance.json"
    else:
        stem, snapshot_dir, prefix = None, None, sp.snapshot_prefix
        metrics, effective_path = metrics_path, None
        running_metrics, table = None, metrics
    effective_text = text_format.MessageToString(sp)
    if not sp.snapshot_prefix and stem is None:
        sp.snapshot_prefix = str(Path(solver_path).with_suffix(""))
        prefix = sp.snapshot_prefix

    resume_file = None
    if snapshot_dir is not None:
        fingerprint = run_fingerprint(effective_text, [*inputs.data_sources, *inputs.mean_files,
                                                       *sp.weights])
        if not claim_snapshot_dir(snapshot_dir, name, fingerprint):
            glog.default_logger().warning(
                f"{snapshot_dir} held snapshots of a run with another solver, net or data; "
                "they were removed and this run starts from iteration 0")
    if resume == "auto":
        if snapshot_dir is not None:
            resume_file = latest_snapshot(snapshot_dir, name)
        elif prefix:  # Caffe's layout: <snapshot_prefix>_iter_<N>.solverstate
            resume_file = latest_snapshot(Path(prefix).parent, Path(prefix).name)
    elif resume:
        resume_file = Path(resume)
    if provenance_path is not None:
        record.add_inputs([*inputs.all_inputs, *sp.weights,
                           *([resume_file] if resume_file else [])])

    xp = get_xp(caffe_pb2.SolverParameter.SolverMode.Name(sp.solver_mode))
    logger = glog.GlogLogger(log_path) if log_path else glog.default_logger()
    previous_default = glog.default_logger()
    glog.set_default_logger(logger)
    try:
        with SignalHandler(sigint_effect, sighup_effect) as signals:
            solver = Solver(sp, xp=xp, log=logger, metrics=table, snapshot_prefix=prefix,
                            action_request=signals)
            try:
                solver.solve(resume_file)
                iterations, stopped = solver.iter, solver.requested_early_exit
                seed = solver.seed
                final_model = Path(f"{prefix}_iter_{iterations}.caffemodel")
                final_state = final_model.with_suffix(".solverstate")
                if not final_state.is_file():
                    final_model, final_state = map(Path, solver.snapshot())
            finally:
                solver.close()
    except BaseException:
        if snapshot_dir is not None:
            marker = snapshot_dir / "run.fingerprint"
            _discard_if_nothing_to_resume(
                snapshot_dir, [effective_path, metrics, running_metrics, marker], created_dirs)
        raise
    finally:
        glog.set_default_logger(previous_default)
        if log_path:
            logger.close()

    if stem is not None and not stopped:
        # The solverstate names its caffemodel by file name, so the pair moves together.
        os.replace(final_model, stem.with_suffix(".caffemodel"))
        os.replace(final_state, stem.with_suffix(".solverstate"))
        final_model, final_state = stem.with_suffix(".caffemodel"), stem.with_suffix(".solverstate")
    if provenance_path is not None and not stopped:
        outputs = {"caffemodel": final_model, "solverstate": final_state}
        if effective_path is not None:
            outputs["solver"] = effective_path
        if metrics is not None:
            outputs["metrics"] = metrics
        record.write(provenance_path, effective_solver=effective_text, seed=seed,
                     solver_mode=caffe_pb2.SolverParameter.SolverMode.Name(sp.solver_mode),
                     iterations=iterations, outputs=outputs,
                     resumed_from=str(resume_file) if resume_file else None)
    else:
        provenance_path = None
    return TrainResult(final_model, final_state, iterations, stopped, resume_file,
                       Path(provenance_path) if provenance_path is not None else None)
