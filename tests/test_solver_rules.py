"""Update rules against hand-written NumPy references (3 steps), clipping, L1/L2, iter_size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.solvers import SolverParameterError, make_update_rule, solver_type
from pipeline_lib.proto import caffe_pb2

# A quadratic-ish problem: gradient g(w) = A * w - c + 0.1 * w**3 (elementwise).
INIT = [np.array([1.0, -2.0, 0.5]), np.array([0.3, -0.7])]
A = [np.array([2.0, 0.5, 1.0]), np.array([1.5, 3.0])]
C = [np.array([0.1, 0.2, -0.3]), np.array([0.4, 0.0])]
LR_MULT = [1.0, 2.0]
DECAY_MULT = [1.0, 0.5]


def grad(i: int, w: np.ndarray) -> np.ndarray:
    return A[i] * w - C[i] + 0.1 * w**3


def solver(**fields) -> caffe_pb2.SolverParameter:
    return caffe_pb2.SolverParameter(**fields)


def run_rule(sp, xp, steps=3, rates=(0.1, 0.08, 0.05)):
    params = [Blob(w.shape, xp, np.float64) for w in INIT]
    for p, w in zip(params, INIT):
        p.data[...] = xp.asarray(w)
    rule = make_update_rule(sp, params, LR_MULT, DECAY_MULT)
    for it in range(steps):
        for i, p in enumerate(params):
            p.diff[...] = xp.asarray(grad(i, to_host(p.data)))
        rule.apply(rates[it], it)
    return [to_host(p.data) for p in params], [to_host(h) for h in rule.history]


def reference(kind: str, sp, steps=3, rates=(0.1, 0.08, 0.05)):
    """Textbook formulas, one param at a time, in float64."""
    m, wd = sp.momentum, sp.weight_decay
    ws = [w.copy() for w in INIT]
    h1 = [np.zeros_like(w) for w in INIT]
    h2 = [np.zeros_like(w) for w in INIT]
    for it in range(steps):
        for i, w in enumerate(ws):
            lr = rates[it] * LR_MULT[i]
            reg = np.sign(w) if sp.regularization_type == "L1" else w
            g = grad(i, w) + wd * DECAY_MULT[i] * reg
            if kind == "SGD":
                h1[i] = m * h1[i] + lr * g
                step = h1[i]
            elif kind == "Nesterov":
                before = h1[i]
                h1[i] = m * h1[i] + lr * g
                step = (1 + m) * h1[i] - m * before
            elif kind == "AdaGrad":
                h1[i] = h1[i] + g * g
                step = lr * g / (np.sqrt(h1[i]) + sp.delta)
            elif kind == "RMSProp":
                d = sp.rms_decay
                h1[i] = d * h1[i] + (1 - d) * g * g
                step = lr * g / (np.sqrt(h1[i]) + sp.delta)
            elif kind == "AdaDelta":
                h1[i] = m * h1[i] + (1 - m) * g * g
                u = g * np.sqrt((h2[i] + sp.delta) / (h1[i] + sp.delta))
                h2[i] = m * h2[i] + (1 - m) * u * u
                step = lr * u
            elif kind == "Adam":
                b1, b2, t = m, sp.momentum2, it + 1
                h1[i] = b1 * h1[i] + (1 - b1) * g
                h2[i] = b2 * h2[i] + (1 - b2) * g * g
                step = lr * math.sqrt(1 - b2**t) / (1 - b1**t) * h1[i] / (np.sqrt(h2[i]) + sp.delta)
            else:
                raise AssertionError(kind)
            ws[i] = w - step
    two = kind in ("AdaDelta", "Adam")
    return ws, h1 + (h2 if two else [])


CASES = {
    "SGD": dict(momentum=0.9, weight_decay=0.01),
    "Nesterov": dict(momentum=0.9, weight_decay=0.01),
    "AdaGrad": dict(weight_decay=0.01, delta=1e-6),
    "RMSProp": dict(weight_decay=0.01, rms_decay=0.9, delta=1e-6),
    "AdaDelta": dict(momentum=0.95, weight_decay=0.01, delta=1e-6),
    "Adam": dict(momentum=0.9, momentum2=0.999, weight_decay=0.01, delta=1e-8),
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("reg", ["L2", "L1"])
def test_rule_matches_reference(kind, reg, xp):
    sp = solver(type=kind, regularization_type=reg, **CASES[kind])
    got_w, got_h = run_rule(sp, xp)
    want_w, want_h = reference(kind, sp)
    assert len(got_h) == len(want_h) == (4 if kind in ("AdaDelta", "Adam") else 2)
    for g, w in zip(got_w + got_h, want_w + want_h):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
    # the params moved (a rule that did nothing would fail above only if INIT were optimal)
    assert not np.allclose(got_w[0], INIT[0])


def test_l1_and_l2_regularization_differ_as_caffe_defines_them():
    params = [Blob((3,), np, np.float64)]
    for reg, want in (("L2", [-1.8, 0.0, 2.7]), ("L1", [-1.9, 0.0, 2.9])):
        params[0].data[...] = [-2.0, 0.0, 3.0]
        params[0].diff[...] = 0
        rule = make_update_rule(solver(type="SGD", weight_decay=0.1, regularization_type=reg),
                                params, [1.0], [1.0])
        rule.apply(1.0, 0)
        np.testing.assert_allclose(params[0].data, want)


def test_unknown_regularization_is_refused():
    with pytest.raises(SolverParameterError, match="regularization_type 'L3'"):
        make_update_rule(solver(regularization_type="L3"), [], [], [])


def sgd_params(grads):
    params = []
    for g in grads:
        p = Blob(np.shape(g), np, np.float64)
        p.diff[...] = g
        params.append(p)
    return params


def test_clip_gradients_scales_by_the_global_l2_norm():
    params = sgd_params([[3.0, 0.0], [4.0]])  # norm 5
    rule = make_update_rule(solver(type="SGD", clip_gradients=1.0), params, [1, 1], [1, 1])
    norm, scale = rule.apply(1.0, 0)
    assert norm == pytest.approx(5.0) and scale == pytest.approx(0.2)
    np.testing.assert_allclose(params[0].data, [-0.6, 0.0])
    np.testing.assert_allclose(params[1].data, [-0.8])


def test_clip_gradients_leaves_small_gradients_alone():
    params = sgd_params([[0.3, 0.0], [0.4]])
    rule = make_update_rule(solver(type="SGD", clip_gradients=1.0), params, [1, 1], [1, 1])
    assert rule.apply(1.0, 0) is None
    np.testing.assert_allclose(params[0].data, [-0.3, 0.0])


def test_iter_size_divides_the_accumulated_diff():
    params = sgd_params([[2.0, 4.0]])  # the sum of 2 passes of gradient [1, 2]
    make_update_rule(solver(type="SGD", iter_size=2), params, [1], [1]).apply(0.5, 0)
    np.testing.assert_allclose(params[0].data, [-0.5, -1.0])


def test_lr_mult_zero_freezes_a_param_without_momentum_history():
    params = sgd_params([[1.0]])
    make_update_rule(solver(type="SGD", momentum=0.9), params, [0.0], [1.0]).apply(1.0, 0)
    assert params[0].data[0] == 0.0


def test_float32_update_stays_float32_and_in_place(xp):
    p = Blob((4,), xp, np.float32)
    p.diff[...] = 1
    data, diff = p.data, p.diff
    rule = make_update_rule(solver(type="Adam", momentum=0.9), [p], [1.0], [1.0])
    history = list(rule.history)
    rule.apply(0.1, 0)
    assert p.data is data and p.diff is diff and p.data.dtype == np.float32
    assert all(a is b and a.dtype == np.float32 for a, b in zip(rule.history, history))


@pytest.mark.parametrize("enum_name, type_name", [
    ("SGD", "SGD"), ("NESTEROV", "Nesterov"), ("ADAGRAD", "AdaGrad"), ("RMSPROP", "RMSProp"),
    ("ADADELTA", "AdaDelta"), ("ADAM", "Adam")])
def test_legacy_solver_type_enum(enum_name, type_name):
    sp = solver(solver_type=caffe_pb2.SolverParameter.SolverType.Value(enum_name))
    assert solver_type(sp) == type_name
    assert type(make_update_rule(sp, [], [], [])).type == type_name


def test_type_and_solver_type_together_are_refused():
    with pytest.raises(SolverParameterError, match="both `solver_type`"):
        solver_type(solver(type="Adam", solver_type=caffe_pb2.SolverParameter.ADAM))


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(SolverParameterError, match="unknown solver type 'Adamax'.*AdaDelta"):
        make_update_rule(solver(type="Adamax"), [], [], [])


@pytest.mark.parametrize("fields, words", [
    (dict(type="AdaGrad", momentum=0.9), "AdaGrad takes no momentum"),
    (dict(type="RMSProp", momentum=0.9), "RMSProp takes no momentum"),
    (dict(type="RMSProp", rms_decay=1.0), "rms_decay must lie in"),
])
def test_caffes_sanity_checks(fields, words):
    with pytest.raises(SolverParameterError, match=words):
        make_update_rule(solver(**fields), [], [], [])


@pytest.mark.parametrize("reg", ["L2", "L1"])
def test_sgd_on_any_array_module_matches_numpy_in_float32(reg, xp):
    """On CuPy, SGD runs as one fused kernel per param; it must agree with the NumPy path."""
    sp = solver(type="SGD", momentum=0.9, weight_decay=0.05, regularization_type=reg)
    results = []
    for module in (np, xp):
        params = [Blob(w.shape, module, np.float32) for w in INIT]
        for p, w in zip(params, INIT):
            p.data[...] = module.asarray(w, dtype=np.float32)
        rule = make_update_rule(sp, params, LR_MULT, [0.0, 1.0])
        for it in range(3):
            for i, p in enumerate(params):
                p.diff[...] = module.asarray(grad(i, to_host(p.data)), dtype=np.float32)
            rule.apply(0.1, it)
        assert all(p.data.dtype == np.float32 for p in params)
        results.append([to_host(a) for a in [p.data for p in params] + rule.history]
                       + [to_host(p.diff) for p in params])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
