"""train(): resume="auto" continues this run's snapshots and never a stale run's."""

from __future__ import annotations

from test_reproducible import SOLVER, make_run_dir, sha256

from pipeline_lib.engine.training.job import train

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
