"""One training run as a file-to-file job: solver prototxt in, final snapshot out.

Used by the `train` rule and by `pcaffe train`. `TrainingJob.create` reads the
solver and its nets once and decides everything about the run before it
starts: the effective solver (the run's iterations, device and weights
patched into the SolverParameter in memory, never into copies of the user's
files, with its net inlined), the device, the paths, the resume policy.
`run` trains.

Intermediate snapshots go to `<stem>.snapshots/` (snapshot_dir.py: those of
another run are put aside, never deleted), with the metrics that a resume
continues; the run holds the stem's lock (output_lock.py) throughout. Nothing
is written beside the stem until training finished: then the effective
solver, the metrics and the final pair (`<stem>.caffemodel` /
`<stem>.solverstate`) are put there. So an interrupted run leaves no output at
all (Snakemake, seeing none of the rule's outputs, simply reruns the job), and
`resume="auto"` continues from the newest complete intermediate snapshot
(exactly: see pipeline_lib.engine.training.resume). A run that fails or is
interrupted before its first snapshot leaves nothing.

A stem `<name>_iter_<N>` names the run's iterations: when N (leading zeros
allowed) is not the iteration the run would end at, `create` refuses the job
before anything is written. Whatever the stem, the final `.solverstate`'s
`learned_net` names the `.caffemodel` beside it.

A finished run also gets `<stem>.provenance.json` (provenance.py): its
inputs' digests, as hashed before training, and where, when and with what
software it ran.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from pipeline_lib.core import glog
from pipeline_lib.core.backend import Device
from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.core.threads import compute_threads
from pipeline_lib.engine.layers.python_layer import modules_beside
from pipeline_lib.engine.model_files import SolverFiles
from pipeline_lib.engine.training.device import run_device
from pipeline_lib.engine.training.digests import DigestCache
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.engine.training.output_lock import LOCK_NAME, OutputLock
from pipeline_lib.engine.training.parameters import (
    check_solver_values,
    default_snapshot_prefix,
    patched,
    run_seed,
)
from pipeline_lib.engine.training.provenance import RunRecord
from pipeline_lib.engine.training.signals import SignalHandler, signals_held
from pipeline_lib.engine.training.snapshot_dir import (
    claim_snapshot_dir,
    discard_if_nothing_to_resume,
    latest_snapshot,
    run_fingerprint,
)
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.engine.training.status_line import TrainingStatus
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import write_prototxt
from pipeline_lib.proto.snapshot import load_solverstate, move_snapshot

_ITER = re.compile(r"_iter_(\d+)$")


class OutputStemError(ValueError):
    """An output stem whose `_iter_<N>` is not the iteration the run would end at."""


@dataclass(frozen=True)
class TrainResult:
    caffemodel: Path
    solverstate: Path
    iterations: int
    stopped_early: bool
    resumed_from: Path | None
    provenance: Path | None = None


def effective_solver(solver: SolverFiles, max_iter: int | None = None,
                     device: Device | None = None, weights: str | None = None,
                     stages: Sequence[str] = (), level: int | None = None
                     ) -> caffe_pb2.SolverParameter:
    """The solver with `max_iter`, `device` (as solver_mode), `weights` (comma list) and
    the train net's `stages`/`level` (`caffe train -stage/-level`) applied, when given,
    and its `net` / `train_net` file inlined as `net_param` / `train_net_param` (as read:
    with a batch-size override applied)."""
    sp = caffe_pb2.SolverParameter()
    sp.CopyFrom(solver.param)
    if max_iter is not None:
        sp.max_iter = int(max_iter)
    if device is not None:
        sp.solver_mode = caffe_pb2.SolverParameter.SolverMode.Value(device.value)
    for field in ("net", "train_net"):
        if getattr(sp, field):
            getattr(sp, f"{field}_param").CopyFrom(solver.nets[getattr(sp, field)])
            sp.ClearField(field)
    if weights:
        del sp.weights[:]
        sp.weights.extend(w for w in weights.split(",") if w)
    return patched(sp, stages=stages, level=level)


@dataclass(frozen=True)
class RunPaths:
    """Where a run with an output stem (e.g. results/lenet_iter_10000) writes."""

    stem: Path
    metrics: Path
    provenance: Path

    @property
    def name(self) -> str:
        """The snapshots' name: the stem without its `_iter_<N>`."""
        return _ITER.sub("", self.stem.name)

    @property
    def iterations(self) -> int | None:
        """The N of a stem `<name>_iter_<N>`; None for a stem that names no iterations."""
        found = _ITER.search(self.stem.name)
        return int(found.group(1)) if found else None

    def check_iterations(self, max_iter: int, source: str,
                         resume: str | os.PathLike | None) -> None:
        """Refuse a stem naming other iterations than the run's last: max_iter (`source`
        says where it comes from), or the iteration of a `resume` state beyond it."""
        named = self.iterations
        if named is None:
            return
        start = load_solverstate(resume).iter if resume else 0
        last = max(max_iter, start)
        if named == last:
            return
        other = self.stem.parent / f"{self.name}_iter_{last}"
        if start > max_iter:
            why = (f"{resume} is at iteration {start}, past max_iter {max_iter}; resume an "
                   f"earlier state, or name the output {other}")
        else:
            why = (f"the run would end at iteration {last} ({source}); ask for {named} "
                   f"iterations (--iterations {named}) or name the output {other}")
        raise OutputStemError(f"output {self.stem} names {named} iterations, but {why}")

    @property
    def snapshot_dir(self) -> Path:
        return self.stem.parent / f"{self.stem.name}.snapshots"

    @property
    def prefix(self) -> str:
        return str(self.snapshot_dir / self.name)

    @property
    def effective_solver(self) -> Path:
        return self.stem.parent / f"{self.stem.name}.solver.prototxt"

    @property
    def digest_cache(self) -> Path:
        """The inputs' content digests, kept between runs (digests.py)."""
        return self.snapshot_dir / "inputs.digests.json"

    @property
    def running_metrics(self) -> Path:
        """The metrics beside the snapshots, which a resume continues (copied to `metrics`
        when the run finished)."""
        return self.snapshot_dir / f"{self.name}_metrics.csv"


@dataclass(frozen=True)
class TrainingJob:
    """One training run, decided before it starts; `run()` trains.

    solver: the solver and its nets, read once.
    effective: the SolverParameter the run trains with, as written beside the model.
    paths: the output stem's paths (None: the solver's own snapshot_prefix, as
        `caffe train` does; `prefix` is where snapshots go either way).
    resume: a .solverstate path, "auto" (the newest snapshot of this run) or None.
    """

    solver: SolverFiles
    effective: caffe_pb2.SolverParameter
    device: Device
    paths: RunPaths | None
    prefix: str
    resume: str | os.PathLike | None = None
    metrics: str | os.PathLike | None = None
    provenance: Path | None = None
    log_path: str | os.PathLike | None = None
    config: Mapping[str, Any] | None = None
    sigint_effect: str = "stop"
    sighup_effect: str = "snapshot"
    threads: int | None = None

    @classmethod
    def create(cls, solver_path: str | os.PathLike, *,
               output_stem: str | os.PathLike | None = None, max_iter: int | None = None,
               solver_mode: str | None = None, resume: str | os.PathLike | None = None,
               weights: str | None = None, overrides: Mapping[str, Any] | None = None,
               workflow_dir: str | os.PathLike | None = None,
               log_path: str | os.PathLike | None = None,
               metrics_path: str | os.PathLike | None = None,
               provenance_path: str | os.PathLike | None = None,
               config: Mapping[str, Any] | None = None, sigint_effect: str = "stop",
               sighup_effect: str = "snapshot", stages: Sequence[str] = (),
               level: int | None = None, threads: int | None = None) -> TrainingJob:
        """The job for `solver_path`.

        output_stem: e.g. "results/lenet_iter_10000": the final snapshot becomes
            `<stem>.caffemodel` + `.solverstate`, the effective solver
            `<stem>.solver.prototxt`, the metrics `<stem>_metrics.csv` (or
            `metrics_path`), the provenance `<stem>.provenance.json` (or
            `provenance_path`). Without it, snapshots go to the solver's
            snapshot_prefix (default: the solver path without its suffix) and a
            provenance record is written only to a given `provenance_path`.
            A stem `<name>_iter_<N>` must name the run's last iteration
            (RunPaths.check_iterations).
        solver_mode: "CPU"/"GPU" overrides the solver's (see device.run_device).
        weights: comma-separated .caffemodel files to start from (fine-tuning).
        stages, level: added to the train net's state (`caffe train -stage/-level`).
        overrides: SolverParameter fields and `batch_size` (engine/overrides.py).
        workflow_dir: where the solver and the nets it names are looked for when the
            working directory has no such file (model_files.locate).
        threads: cores for the run: lanes, BLAS on one thread (core.threads; None: as the
            environment says).
        config: the workflow's config section for this run, kept in the record.
        """
        solver = SolverFiles.read(solver_path, workflow_dir=workflow_dir, overrides=overrides)
        device = run_device(solver_mode, solver.param)
        effective = effective_solver(solver, max_iter, device if solver_mode else None,
                                     weights, stages, level)
        check_solver_values(effective)
        paths, metrics = None, metrics_path
        prefix = effective.snapshot_prefix or default_snapshot_prefix(solver_path)
        if output_stem is not None:
            stem = Path(output_stem)
            paths = RunPaths(stem, Path(metrics_path or stem.parent / f"{stem.name}_metrics.csv"),
                             Path(provenance_path or stem.parent / f"{stem.name}.provenance.json"))
            source = (f"--iterations {max_iter}" if max_iter is not None
                      else f"max_iter of {solver_path}")
            paths.check_iterations(effective.max_iter, source, None if resume == "auto" else resume)
            prefix, metrics, provenance_path = paths.prefix, paths.metrics, paths.provenance
        return cls(solver, effective, device, paths, prefix, resume, metrics,
                   Path(provenance_path) if provenance_path is not None else None, log_path,
                   config, sigint_effect, sighup_effect, threads)

    @property
    def seed(self) -> int:
        return run_seed(self.effective)

    @cached_property
    def effective_text(self) -> str:
        return text_format.MessageToString(self.effective)

    def solver_param(self) -> caffe_pb2.SolverParameter:
        """The effective solver with the run's snapshot prefix: what the Solver gets."""
        sp = caffe_pb2.SolverParameter()
        sp.CopyFrom(self.effective)
        sp.snapshot_prefix = self.prefix
        return sp

    def resume_file(self) -> Path | None:
        """The .solverstate to continue from, by the resume policy."""
        if self.resume != "auto":
            return Path(self.resume) if self.resume else None
        if self.paths is not None:
            return latest_snapshot(self.paths.snapshot_dir, self.paths.name)
        # Caffe's layout: <snapshot_prefix>_iter_<N>.solverstate
        return latest_snapshot(Path(self.prefix).parent, Path(self.prefix).name)

    def run(self) -> TrainResult:
        """Train; move the final pair to the stem and write the provenance record."""
        with compute_threads(self.threads), self._output_lock():
            record = RunRecord(self.solver.path, config=self.config)
            files = self.solver.files
            record.add_texts([files.solver, *files.nets])
            digests = self._claim_snapshot_dir()
            resume_file = self.resume_file()
            if self.provenance is not None:
                record.add_inputs([*files.all_inputs, *self.effective.weights,
                                   *([resume_file] if resume_file else [])], digests)
            digests.save()
            model, state, iterations, stopped = self._train(resume_file)
            provenance = None
            with signals_held():  # the final files appear whole, or not at all
                if self.paths is not None and not stopped:
                    model, state = self._publish(model, state)
                if self.provenance is not None and not stopped:
                    outputs = {"caffemodel": model, "solverstate": state}
                    if self.paths is not None:
                        outputs["solver"] = self.paths.effective_solver
                    if self.metrics is not None:
                        outputs["metrics"] = self.metrics
                    record.write(self.provenance, effective_solver=self.effective_text,
                                 seed=self.seed, solver_mode=self.device.value,
                                 iterations=iterations, outputs=outputs,
                                 resumed_from=str(resume_file) if resume_file else None)
                    provenance = self.provenance
        return TrainResult(model, state, iterations, stopped, resume_file, provenance)

    @contextlib.contextmanager
    def _output_lock(self) -> Iterator[None]:
        """Make the snapshot folder and hold the stem's lock (output_lock.py) while the run
        lasts. On a failure or a Ctrl-C, anywhere from the folder's making on, what the run
        wrote goes unless a snapshot lets it resume (the folders it made, when empty)."""
        if self.paths is None:
            yield
            return
        snapshot_dir = self.paths.snapshot_dir
        created = [d for d in (snapshot_dir, *snapshot_dir.parents) if not d.exists()]
        lock = OutputLock(snapshot_dir, self.paths.stem)
        try:
            with signals_held():  # folder and lock come together: a Ctrl-C comes after both
                snapshot_dir.mkdir(parents=True, exist_ok=True)
                lock.__enter__()
            yield
        except BaseException:
            with signals_held():  # a second Ctrl-C does not cut the clean-up short
                if lock.held:
                    self._discard_if_nothing_to_resume(created)
                else:  # another run's folder and lock: only our own empty folders go
                    discard_if_nothing_to_resume(snapshot_dir, [], created)
            raise
        finally:
            lock.release()

    def _claim_snapshot_dir(self) -> DigestCache:
        """Put aside snapshots of another run; returns the digests of the inputs (cached in
        the snapshot folder)."""
        if self.paths is None:
            return DigestCache()
        snapshot_dir, name = self.paths.snapshot_dir, self.paths.name
        digests = DigestCache(self.paths.digest_cache)
        files = self.solver.files
        fingerprint = run_fingerprint(self.effective_text, [*files.data_sources,
                                                            *files.mean_files,
                                                            *self.effective.weights], digests)
        keep = Path(self.resume) if self.resume not in (None, "auto") else None
        aside = claim_snapshot_dir(snapshot_dir, name, fingerprint, keep)
        if aside is not None:
            glog.default_logger().warning(
                f"{snapshot_dir} held snapshots of a run with another solver, net or data; "
                f"they were moved to {aside}/ and this run starts from "
                f"{'iteration 0' if keep is None else keep}")
        return digests

    def _publish(self, model: Path, state: Path) -> tuple[Path, Path]:
        """Put the finished run's outputs beside the stem: the effective solver, the metrics,
        then the final pair (last, so a caffemodel there means the rest is too)."""
        paths = self.paths
        write_prototxt(self.effective, paths.effective_solver)
        atomic_write_bytes(paths.metrics, paths.running_metrics.read_bytes())
        return move_snapshot(model, state, paths.stem)

    def _discard_if_nothing_to_resume(self, created_dirs: list[Path]) -> None:
        """After a failure: with no snapshot to resume from, remove what the run wrote (in its
        snapshot folder only: nothing beside the stem is written before the run finished)."""
        if self.paths is not None:
            p = self.paths
            discard_if_nothing_to_resume(
                p.snapshot_dir, [p.running_metrics, p.snapshot_dir / "run.fingerprint",
                                 p.digest_cache, p.snapshot_dir / LOCK_NAME], created_dirs)

    def _train(self, resume_file: Path | None) -> tuple[Path, Path, int, bool]:
        """(final caffemodel, solverstate, iterations, stopped early)."""
        xp = self.device.xp
        logger = glog.GlogLogger(self.log_path) if self.log_path else glog.default_logger()
        previous_default = glog.default_logger()
        glog.set_default_logger(logger)
        try:
            with SignalHandler(self.sigint_effect, self.sighup_effect) as signals:
                with modules_beside(self.solver.path, *self.solver.locations.values()):
                    solver = Solver(self.solver_param(), net_files=self.solver.nets, xp=xp,
                                    log=logger, metrics=self._metrics_table(),
                                    action_request=signals)
                with solver:
                    status = TrainingStatus.attach(solver, logger.stream)
                    try:
                        solver.solve(resume_file)
                    finally:
                        if status is not None:
                            status.close()
                    iterations, stopped = solver.iter, solver.requested_early_exit
                    model = Path(f"{self.prefix}_iter_{iterations}.caffemodel")
                    state = model.with_suffix(".solverstate")
                    if not state.is_file():
                        model, state = map(Path, solver.snapshot())
        finally:
            glog.set_default_logger(previous_default)
            if self.log_path:
                logger.close()
        return model, state, iterations, stopped

    def _metrics_table(self) -> MetricsTable | str | os.PathLike | None:
        return self.metrics if self.paths is None else MetricsTable(self.paths.running_metrics)


def train(solver_path: str | os.PathLike, **options: Any) -> TrainResult:
    """Train from `solver_path`: `TrainingJob.create(solver_path, **options).run()`."""
    return TrainingJob.create(solver_path, **options).run()
