"""Learning-rate policies against hand-computed values and Caffe's own log."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import DATA

from pipeline_lib.engine.solvers.lr_policy import LrPolicyError, current_step, learning_rate
from pipeline_lib.engine.training.outputs import fmt
from pipeline_lib.proto import caffe_pb2


def sp(**fields) -> caffe_pb2.SolverParameter:
    stepvalue = fields.pop("stepvalue", ())
    p = caffe_pb2.SolverParameter(**fields)
    p.stepvalue.extend(stepvalue)
    return p


def approx(x):
    return pytest.approx(x, rel=1e-6)  # the solver's fields are float32


def test_fixed():
    p = sp(lr_policy="fixed", base_lr=0.01)
    assert learning_rate(p, 0) == approx(0.01)
    assert learning_rate(p, 123456) == approx(0.01)


def test_step():
    p = sp(lr_policy="step", base_lr=0.1, gamma=0.5, stepsize=10)
    assert [learning_rate(p, i) for i in (0, 9, 10, 19, 25)] == [
        approx(0.1), approx(0.1), approx(0.05), approx(0.05), approx(0.025)]
    assert current_step(p, 25) == 2


def test_exp():
    p = sp(lr_policy="exp", base_lr=1.0, gamma=0.9)
    assert learning_rate(p, 0) == approx(1.0)
    assert learning_rate(p, 2) == approx(0.81)


def test_inv():
    p = sp(lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75)
    # 0.01 * (1 + 1e-4 * 100) ** -0.75 = 0.01 * 1.01 ** -0.75
    assert learning_rate(p, 100) == approx(0.0099256518)
    assert learning_rate(p, 0) == approx(0.01)


def test_multistep():
    p = sp(lr_policy="multistep", base_lr=1.0, gamma=0.1, stepvalue=[5, 8])
    rates = [learning_rate(p, i) for i in (0, 4, 5, 7, 8, 100)]
    assert rates == [approx(1), approx(1), approx(0.1), approx(0.1), approx(0.01), approx(0.01)]


def test_multistep_advances_one_boundary_per_iteration_like_caffe():
    p = sp(lr_policy="multistep", base_lr=1.0, gamma=0.1, stepvalue=[3, 3])
    step, steps = 0, []
    for it in range(6):
        step = current_step(p, it, step)
        steps.append(step)
        assert learning_rate(p, it, step) == learning_rate(p, it)  # stateless agrees
    assert steps == [0, 0, 0, 1, 2, 2]


def test_poly():
    p = sp(lr_policy="poly", base_lr=1.0, power=2.0, max_iter=10)
    assert learning_rate(p, 5) == approx(0.25)
    assert learning_rate(p, 10) == 0.0


def test_sigmoid():
    p = sp(lr_policy="sigmoid", base_lr=1.0, gamma=0.5, stepsize=10)
    assert learning_rate(p, 10) == approx(0.5)
    assert learning_rate(p, 12) == approx(1 / (1 + math.exp(-1)))


@pytest.mark.parametrize("fields, words", [
    (dict(lr_policy="cosine", base_lr=1.0), "unknown lr_policy 'cosine'"),
    (dict(base_lr=1.0), "(not set)"),
    (dict(lr_policy="step", base_lr=1.0, gamma=0.1), "stepsize > 0"),
    (dict(lr_policy="poly", base_lr=1.0, power=1.0), "max_iter > 0"),
    (dict(lr_policy="inv", base_lr=1.0, gamma=-1.0, power=1.0), "gamma >= 0"),
])
def test_bad_policies_are_named(fields, words):
    with pytest.raises(LrPolicyError, match=re.escape(words)):
        learning_rate(sp(**fields), 1)


def test_inv_matches_every_lr_line_of_caffes_lenet_log():
    p = sp(lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75)
    seen = 0
    for line in (DATA / "golden" / "caffe_lenet_train.log").read_text().splitlines():
        m = re.search(r"Iteration (\d+), lr = (\S+)$", line)
        if m:
            assert fmt(learning_rate(p, int(m.group(1)))) == m.group(2), line
            seen += 1
    assert seen == 100


def test_rate_uses_the_solvers_float_type():
    p = sp(lr_policy="inv", base_lr=0.01, gamma=1e-4, power=0.75)
    assert fmt(learning_rate(p, 600)) == "0.0095724"  # float32, as Caffe logs it
    assert fmt(learning_rate(p, 600, dtype=np.float64)) == "0.00957239"
