"""The train rule's targets: a target with leading zeros in its iteration count is written
exactly at its path, with a .solverstate naming the .caffemodel beside it."""

from __future__ import annotations

import pytest
from tiny_workflow import make_tiny_workflow, snakemake

from pipeline_lib.proto.snapshot import load_solverstate


@pytest.mark.slow  # a Snakemake run: about 4 s
def test_target_with_leading_zeros(tmp_path):
    root = make_tiny_workflow(tmp_path / "wf")
    done = snakemake(root, "results/small_iter_0010.caffemodel")
    assert done.returncode == 0, done.stdout[-4000:]
    state = load_solverstate(root / "results/small_iter_0010.solverstate")
    assert (state.iter, state.learned_net) == (10, "small_iter_0010.caffemodel")
    assert (root / "results/small_iter_0010.caffemodel").is_file()
