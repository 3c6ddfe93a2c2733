"""Caffe's solver types (update rules), one module each, registered by type string.

Importing this package imports every module in it, so a rule is added by
one module that registers its class (see `base.register`); modules that
register nothing (`base`, `lr_policy`) are imported all the same.
`make_update_rule(sp, params, lr_mults, decay_mults)` picks the rule for
`sp.type`, or for the legacy `solver_type` enum when only that is set.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.solvers.base import UPDATE_RULES, SolverParameterError, UpdateRule
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.upgrade import SOLVER_TYPES

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["UPDATE_RULES", "SolverParameterError", "UpdateRule", "make_update_rule",
           "solver_type"]


def solver_type(sp: caffe_pb2.SolverParameter) -> str:
    """The solver's type string: `type`, or the legacy `solver_type` enum's equivalent."""
    if sp.HasField("solver_type"):
        if sp.HasField("type"):
            raise SolverParameterError(
                "the solver sets both `solver_type` (old enum) and `type` (string); keep only "
                "`type`")
        return SOLVER_TYPES[caffe_pb2.SolverParameter.SolverType.Name(sp.solver_type)]
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
