"""Caffe's solver types (update rules), one module each, registered by type string.

`make_update_rule(sp, params, lr_mults, decay_mults)` picks the rule for
`sp.type`, or for the legacy `solver_type` enum when only that is set.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.solvers import adadelta, adagrad, adam, nesterov, rmsprop, sgd  # noqa: F401
from pipeline_lib.engine.solvers.base import UPDATE_RULES, SolverParameterError, UpdateRule
from pipeline_lib.proto import caffe_pb2

__all__ = ["UPDATE_RULES", "SolverParameterError", "UpdateRule", "make_update_rule",
           "solver_type"]

_LEGACY = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
           "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def solver_type(sp: caffe_pb2.SolverParameter) -> str:
    """The solver's type string: `type`, or the legacy `solver_type` enum's equivalent."""
    if sp.HasField("solver_type"):
        if sp.HasField("type"):
            raise SolverParameterError(
                "the solver sets both `solver_type` (old enum) and `type` (string); keep only "
                "`type`")
        return _LEGACY[caffe_pb2.SolverParameter.SolverType.Name(sp.solver_type)]
    return sp.type


def make_update_rule(sp: caffe_pb2.SolverParameter, params: Sequence[Blob],
                     lr_mults: Sequence[float], decay_mults: Sequence[float]) -> UpdateRule:
    name = solver_type(sp)
    try:
        cls = UPDATE_RULES[name]
    except KeyError:
        known = ", ".join(sorted(UPDATE_RULES))
        raise SolverParameterError(f"unknown solver type {name!r}; known types: {known}") from None
    return cls(sp, params, lr_mults, decay_mults)
