"""The final pair at an output stem: its .solverstate names the .caffemodel beside it,
whatever the stem, and a stem whose `_iter_<N>` disagrees with the iterations the run
would train is refused before training, with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.proto.snapshot import load_solverstate
from reliability.rel_util import clean_failure, pcaffe, record, sha256, solver_with, tree

TRAIN = ("train", "--solver", "s20.prototxt")


@pytest.fixture
def run(run_dir) -> Path:
    """The run folder with s20.prototxt: max_iter 20, a snapshot every 10 iterations."""
    solver_with(run_dir, "s20.prototxt", max_iter=20, snapshot=10)
    return run_dir


def _learned_net(state: Path) -> str:
    return load_solverstate(state).learned_net


@pytest.mark.parametrize("stem, args", [
    ("out/x_iter_0020", ("--iterations", 20)),  # leading zeros, as a Snakemake target has
    ("out/x_iter_020", ()),
    ("out/plain", ()),  # a stem that names no iterations
    ("out/v1.2_iter_20", ()),  # a dot in the stem
])
def test_final_solverstate_names_the_caffemodel_beside_it(run, stem, args):
    done = pcaffe(*TRAIN, *args, "--output", stem, cwd=run)
    assert done.returncode == 0, done.stderr[-3000:]
    state = run / f"{stem}.solverstate"
    assert (run / f"{stem}.caffemodel").is_file()
    assert _learned_net(state) == Path(f"{stem}.caffemodel").name
    assert load_solverstate(state).iter == 20
    shown = " ".join(map(str, ("pcaffe train", *args, "--output", stem)))
    record(f"`{shown}`: the final .solverstate's learned_net", _learned_net(state),
           done.returncode)
    # The pair resumes: the .caffemodel is found beside the .solverstate.
    more = pcaffe("train", "--solver", "solver.prototxt", "--snapshot", state, "--iterations",
                  30, "--output", "out/more_iter_30", cwd=run)
    assert more.returncode == 0, more.stderr[-3000:]


def test_final_pair_of_a_plain_stem_has_the_usual_bytes(run):
    """Renaming the pair to another stem changes learned_net, and nothing else."""
    for stem in ("out/a_iter_20", "out/b_iter_0020"):
        done = pcaffe(*TRAIN, "--output", stem, cwd=run)
        assert done.returncode == 0, done.stderr[-3000:]
    out = run / "out"
    assert sha256(out / "a_iter_20.caffemodel") == sha256(out / "b_iter_0020.caffemodel")
    a, b = load_solverstate(out / "a_iter_20.solverstate"), load_solverstate(
        out / "b_iter_0020.solverstate")
    assert a.learned_net == "a_iter_20.caffemodel"
    b.learned_net = a.learned_net
    assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def test_stem_naming_other_iterations_than_max_iter(run):
    before = tree(run)
    done = pcaffe(*TRAIN, "--output", "out/x_iter_100", cwd=run)
    clean_failure(done, "`--output X_iter_100` without `--iterations`, the solver's max_iter "
                        "being 20",
                  r"^pcaffe train: error: output out/x_iter_100 names 100 iterations",
                  r"would end at iteration 20 \(max_iter of s20\.prototxt\)",
                  r"--iterations 100", r"out/x_iter_20\b")
    assert tree(run) == before


def test_stem_naming_other_iterations_than_asked_for(run):
    before = tree(run)
    done = pcaffe(*TRAIN, "--iterations", 30, "--output", "out/x_iter_20", cwd=run)
    clean_failure(done, "`--iterations 30 --output X_iter_20`",
                  r"output out/x_iter_20 names 20 iterations",
                  r"iteration 30 \(--iterations 30\)", r"out/x_iter_30\b")
    assert tree(run) == before


def test_resuming_a_state_beyond_the_stems_iterations(run):
    done = pcaffe("train", "--solver", "solver.prototxt", "--iterations", 30, "--output",
                  "out/a_iter_30", cwd=run)
    assert done.returncode == 0, done.stderr[-3000:]
    before = tree(run)
    done = pcaffe(*TRAIN, "--snapshot", "out/a_iter_30.solverstate", "--output", "out/b_iter_20",
                  cwd=run)
    clean_failure(done, "`--snapshot` of a state at iteration 30 with `--output X_iter_20`",
                  r"output out/b_iter_20 names 20 iterations",
                  r"out/a_iter_30\.solverstate is at iteration 30", r"out/b_iter_30\b")
    assert tree(run) == before
