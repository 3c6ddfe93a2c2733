"""Learning-rate policies of Caffe's SGD-family solvers (`lr_policy` in a solver).

    fixed      base_lr
    step       base_lr * gamma ^ floor(iter / stepsize)
    exp        base_lr * gamma ^ iter
    inv        base_lr * (1 + gamma * iter) ^ (-power)
    multistep  base_lr * gamma ^ (number of stepvalue boundaries passed)
    poly       base_lr * (1 - iter / max_iter) ^ power
    sigmoid    base_lr / (1 + exp(-gamma * (iter - stepsize)))

Caffe keeps `current_step` (saved in the .solverstate) for `step` and
`multistep`; `current_step` reproduces its bookkeeping, including multistep's
one-boundary-per-iteration advance. Rates are computed with Caffe's
arithmetic for the solver's float type (float32 unless told otherwise).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline_lib.proto import caffe_pb2

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


class LrPolicyError(ValueError):
    """The solver's lr_policy is unknown or its parameters do not fit it."""


def _need(cond: bool, policy: str, what: str) -> None:
    if not cond:
        raise LrPolicyError(f"lr_policy {policy!r} needs {what}")


def current_step(sp: caffe_pb2.SolverParameter, iteration: int, previous: int = 0) -> int:
    """Caffe's `current_step` after computing the rate at `iteration`.

    `previous` is the value before this iteration (0 at the start, or the one
    restored from a .solverstate). `step`: iteration // stepsize; `multistep`:
    advances by at most one boundary per call, as Caffe does; otherwise unchanged.
    """
    policy = sp.lr_policy
    if policy == "step":
        _need(sp.stepsize > 0, policy, f"stepsize > 0 (got {sp.stepsize})")
        return iteration // sp.stepsize
    if policy == "multistep":
        if previous < len(sp.stepvalue) and iteration >= sp.stepvalue[previous]:
            return previous + 1
    return previous


def _multistep_passed(stepvalues, iteration: int) -> int:
    """Boundaries passed by `iteration` when the rate is asked for every iteration from 0.

    Caffe advances at most one boundary per iteration, so boundary j is passed
    at iteration max(stepvalue[j], (iteration boundary j-1 was passed) + 1).
    """
    passed, at = 0, -1
    for value in stepvalues:
        at = max(int(value), at + 1)
        if at > iteration:
            break
        passed += 1
    return passed


def _pow(t, x, y):
    """x ** y rounded once to type t, as glibc's correctly rounded powf gives it (NumPy's
    float32 power is not the same on every machine)."""
    x, y = float(x), float(y)
    if x == 0 and y < 0:
        return t(math.inf)
    try:
        return t(math.pow(x, y))
    except OverflowError:
        return t(math.inf)
    except ValueError:  # a negative base to a fractional power
        return t(math.nan)


def _exp(t, x):
    try:
        return t(math.exp(float(x)))
    except OverflowError:
        return t(math.inf)


def learning_rate(sp: caffe_pb2.SolverParameter, iteration: int, step: int | None = None,
                  dtype=np.float32) -> float:
    """The learning rate at `iteration` under `sp.lr_policy`.

    Computed with Caffe's arithmetic for a solver of `dtype` (float32 for
    training: its logged rates are float32 values, e.g. `lr = 0.0095724` at
    iteration 600 of the LeNet tutorial, where double precision gives
    0.00957239). `step` is Caffe's `current_step` for `multistep` (see
    `current_step`); when omitted it is derived from `iteration` as if the
    rate were asked for every iteration from 0 on, which is what a solver does.
    """
    policy = sp.lr_policy
    t = np.dtype(dtype).type
    base, gamma, power = t(sp.base_lr), t(sp.gamma), t(sp.power)
    it = int(iteration)
    if policy == "fixed":
        return float(base)
    if policy in ("step", "exp", "multistep", "inv", "sigmoid"):
        _need(gamma >= 0, policy, f"gamma >= 0 (got {float(gamma)})")
    # Caffe's pow(Dtype, int) runs in double; pow/exp of two Dtypes in Dtype.
    if policy == "step":
        return float(t(float(base) * float(gamma) ** current_step(sp, it)))
    if policy == "exp":
        return float(t(float(base) * float(gamma) ** it))
    if policy == "inv":
        return float(base * _pow(t, t(1) + gamma * t(it), -power))
    if policy == "multistep":
        k = _multistep_passed(list(sp.stepvalue), it) if step is None else step
        return float(t(float(base) * float(gamma) ** k))
    if policy == "poly":
        _need(sp.max_iter > 0, policy, f"max_iter > 0 (got {sp.max_iter})")
        return float(base * _pow(t, t(1) - t(it) / t(sp.max_iter), power))
    if policy == "sigmoid":
        _need(sp.stepsize > 0, policy, f"stepsize > 0 (got {sp.stepsize})")
        return float(base * (t(1) / (t(1) + _exp(t, -gamma * (t(it) - t(sp.stepsize))))))
    shown = repr(policy) if policy else "(not set)"
    raise LrPolicyError(f"unknown lr_policy {shown}; known policies: {', '.join(POLICIES)}")
