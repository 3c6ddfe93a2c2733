"""Resuming: train(resume="auto") continues this run's snapshots and never a stale run's,
and a snapshot asked for at any moment resumes to the bytes of an uninterrupted run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from google.protobuf import text_format
from small_net import NET
from test_reproducible import SOLVER, make_run_dir, sha256

from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.engine.training.job import train
from pipeline_lib.engine.training.signals import SolverAction
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2

SNAPSHOTTING = SOLVER.replace("snapshot: 0", "snapshot: 10")
STEM = "results/small_iter_30"


def run(**kw):
    return train("solver.prototxt", output_stem=STEM, max_iter=30, resume="auto", **kw)


def test_auto_resume_continues_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.chdir(make_run_dir(tmp_path / "run", SNAPSHOTTING))
    first = run()
    assert first.resumed_from is None
    whole = sha256(first.caffemodel)
    # as after a kill at iteration 25: the final pair is gone, snapshots 10 and 20 remain
    first.caffemodel.unlink()
    first.solverstate.unlink()
    (tmp_path / "run" / f"{STEM}.snapshots" / "small_iter_30.caffemodel").unlink(missing_ok=True)
    again = run()
    assert again.resumed_from is not None and again.resumed_from.name == "small_iter_20.solverstate"
    assert sha256(again.caffemodel) == whole


def test_snapshots_of_another_solver_are_not_resumed(tmp_path, monkeypatch):
    run_dir = make_run_dir(tmp_path / "run", SNAPSHOTTING)
    monkeypatch.chdir(run_dir)
    first = run()
    first.caffemodel.unlink()
    first.solverstate.unlink()
    (run_dir / "solver.prototxt").write_text(SNAPSHOTTING.replace("base_lr: 0.05", "base_lr: 0.02"))
    changed = run()
    assert changed.resumed_from is None  # started again from iteration 0
    fresh_dir = make_run_dir(tmp_path / "fresh", SNAPSHOTTING.replace("base_lr: 0.05",
                                                                      "base_lr: 0.02"))
    monkeypatch.chdir(fresh_dir)
    assert sha256(run().caffemodel) == sha256(run_dir / f"{STEM}.caffemodel")


# -- a request that lands inside a test pass -------------------------------------------------

def _solver(run_dir: Path, monkeypatch) -> Solver:
    monkeypatch.chdir(run_dir)
    sp = text_format.Parse(SOLVER, caffe_pb2.SolverParameter())
    sp.ClearField("net")
    net = text_format.Parse(NET, caffe_pb2.NetParameter())
    return Solver(sp, net_param=net, log=GlogLogger(stream=io.StringIO()),
                  snapshot_prefix="small")


def _request_inside_test(solver: Solver, action: SolverAction, at_iter: int) -> None:
    """Ask for `action` before the second batch of the test pass at iteration `at_iter`
    (one batch of it consumed), as a signal landing there would."""
    testing, calls = [False], [0]
    test = solver.test

    def watched_test(i: int = 0):
        testing[0] = solver.iter == at_iter
        try:
            return test(i)
        finally:
            testing[0] = False

    def request() -> SolverAction:
        if testing[0]:
            calls[0] += 1
            if calls[0] == 2:
                return action
        return SolverAction.NONE

    solver.test = watched_test
    solver.action_request = request


def _final_files(run_dir: Path) -> list[bytes]:
    """The final caffemodel and solverstate bytes, and the metrics without wall time."""
    metrics = [",".join(c for i, c in enumerate(line.split(",")) if i != 3)
               for line in (run_dir / "small_metrics.csv").read_text().splitlines()]
    return [(run_dir / "small_iter_30.caffemodel").read_bytes(),
            (run_dir / "small_iter_30.solverstate").read_bytes(), "\n".join(metrics).encode()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[bytes]:
    run_dir = make_run_dir(tmp_path_factory.mktemp("whole") / "run")
    with pytest.MonkeyPatch.context() as mp, _solver(run_dir, mp) as solver:
        solver.solve()
    return _final_files(run_dir)


@pytest.mark.parametrize("at_iter", [15, 30], ids=["test-at-15", "final-test"])
@pytest.mark.parametrize("action", [SolverAction.STOP, SolverAction.SNAPSHOT],
                         ids=["STOP", "SNAPSHOT"])
def test_a_request_inside_a_test_pass_snapshots_the_iteration_boundary(
        tmp_path, monkeypatch, uninterrupted, action, at_iter):
    """The snapshot taken for a request during a test pass is the state the iteration
    started from, so resuming from it replays that test from its first batch."""
    run_dir = make_run_dir(tmp_path / "run")
    with _solver(run_dir, monkeypatch) as solver:
        _request_inside_test(solver, action, at_iter)
        solver.solve()
        assert solver.requested_early_exit == (action == SolverAction.STOP)
    snapshot = run_dir / f"small_iter_{at_iter}.solverstate"
    assert snapshot.is_file()
    if action == SolverAction.SNAPSHOT:  # the run went on undisturbed
        assert _final_files(run_dir) == uninterrupted
    with _solver(run_dir, monkeypatch) as solver:
        solver.solve(snapshot)
    assert _final_files(run_dir) == uninterrupted


class _Killed(Exception):
    pass


def test_a_kill_just_after_a_snapshot_keeps_the_metrics_rows_before_it(
        tmp_path, monkeypatch, uninterrupted):
    """The .solverstate is what a resume looks for: the metrics rows before it must already
    be on disk when it appears, or a kill right then loses them from the resumed run."""
    from pipeline_lib.engine.training import solver as solver_module

    save = solver_module.save_solverstate

    def save_then_die(path, **kw):
        save(path, **kw)
        raise _Killed(path)

    run_dir = make_run_dir(tmp_path / "run")
    with _solver(run_dir, monkeypatch) as solver:
        solver.param.snapshot = 10
        monkeypatch.setattr(solver_module, "save_solverstate", save_then_die)
        with pytest.raises(_Killed):
            solver.solve()
    monkeypatch.undo()
    with _solver(run_dir, monkeypatch) as solver:
        solver.solve(run_dir / "small_iter_10.solverstate")
    assert _final_files(run_dir) == uninterrupted
