"""The device of a training run, and so of its evaluation: decided here, once.

An explicit choice (the workflow's config `train.solver_mode`, `pcaffe train
--gpu`) wins; else the solver's own `solver_mode` (Caffe's default: GPU).
"""

from __future__ import annotations

import os

from pipeline_lib.core.backend import Device
from pipeline_lib.proto import caffe_pb2


def run_device(override: str | None,
               solver: caffe_pb2.SolverParameter | str | os.PathLike) -> Device:
    """`override` ("CPU"/"GPU"; "" or None: none), else `solver`'s solver_mode.

    `solver` is a SolverParameter or a solver path, read only when there is no override.
    """
    if override:
        return Device.named(override)
    if not isinstance(solver, caffe_pb2.SolverParameter):
        from pipeline_lib.proto.prototxt import read_solver

        solver = read_solver(solver)
    return Device.named(caffe_pb2.SolverParameter.SolverMode.Name(solver.solver_mode))
