"""Resuming a solver from a .solverstate: Caffe's fields, then our exact-resume state.

The resume state (`resume_state_json` in the .solverstate) holds what Caffe
does not keep: the Generator's state, each net's layer states (data
positions) and the smoothed loss, so training 0 -> N, then resuming -> M
gives the same bits as 0 -> M.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from pipeline_lib.engine.net import NetError
from pipeline_lib.engine.solvers import SolverParameterError
from pipeline_lib.proto.blobproto import blob_proto_to_array
from pipeline_lib.proto.snapshot import load_caffemodel, load_solverstate, resolve_learned_net

if TYPE_CHECKING:
    from pipeline_lib.engine.training.solver import Solver

RESUME_STATE_VERSION = 1


def capture(solver: Solver) -> dict:
    """The solver's resume state as of now."""
    return {"version": RESUME_STATE_VERSION, "solver_type": solver.type,
            "rng": solver.rng.bit_generator.state, "train_net": solver.net.get_state(),
            "test_nets": [net.get_state() for net in solver.test_nets],
            "smoothing": solver.loss.state()}


def to_json(state: dict) -> str:
    """A resume state as canonical JSON."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def restore(solver: Solver, path: str | os.PathLike) -> None:
    """Continue from a .solverstate (ours, or Caffe's: then data and randomness restart)."""
    state = load_solverstate(path)
    solver.iter = state.iter
    if state.HasField("learned_net") and state.learned_net:
        _restore_weights(solver, resolve_learned_net(path, state.learned_net))
    solver.current_step = state.current_step
    _restore_history(solver, path, state.history)
    if state.resume_state_json:
        _restore_resume_state(solver, path, state.resume_state_json)
    else:
        solver.log.warning(f"{path} has no resume_state_json (written by Caffe?): data and "
                           "random state start afresh, so the run will not equal an "
                           "uninterrupted one")
    solver.metrics.resume(solver.iter)


def _restore_weights(solver: Solver, model) -> None:
    net = solver.net
    copied = net.copy_trained_layers_from(load_caffemodel(model), source=str(model))
    # A snapshot of this net holds every layer with weights; a caffemodel cut short
    # between two layers still parses, so look for the ones it lacks.
    missing = [name for name, layer in zip(net.layer_names, net.layers)
               if layer.blobs and name not in copied]
    if missing:
        raise NetError(f"{model}: holds no weights for layer(s) "
                       f"{', '.join(map(repr, missing))} of this net; the snapshot is "
                       "truncated or from another net")


def _restore_history(solver: Solver, path, history) -> None:
    if len(history) != len(solver.history):
        raise SolverParameterError(
            f"{path}: holds {len(history)} history blobs but the {solver.type} solver "
            f"of this net needs {len(solver.history)}")
    for i, (bp, h) in enumerate(zip(history, solver.history)):
        values = blob_proto_to_array(bp)
        if values.size != h.size:
            raise SolverParameterError(f"{path}: history blob {i} has shape "
                                       f"{list(values.shape)} but this net needs "
                                       f"{list(h.shape)}")
        h[...] = solver.xp.asarray(values.reshape(h.shape), dtype=h.dtype)


def _restore_resume_state(solver: Solver, path, text: str) -> None:
    try:
        state = json.loads(text)
        version = state["version"]
    except (ValueError, KeyError, TypeError) as e:
        raise SolverParameterError(f"{path}: unreadable resume_state_json: {e}") from None
    if version != RESUME_STATE_VERSION:
        raise SolverParameterError(f"{path}: resume_state_json version {version}, expected "
                                   f"{RESUME_STATE_VERSION}")
    if state["solver_type"] != solver.type:
        raise SolverParameterError(f"{path}: written by a {state['solver_type']} solver, "
                                   f"this one is {solver.type}")
    if len(state["test_nets"]) != len(solver.test_nets):
        raise SolverParameterError(f"{path}: state of {len(state['test_nets'])} test nets, "
                                   f"this solver has {len(solver.test_nets)}")
    solver.rng.bit_generator.state = state["rng"]
    solver.net.set_state(state["train_net"])
    for net, net_state in zip(solver.test_nets, state["test_nets"]):
        net.set_state(net_state)
    solver.restored_smoothing = state.get("smoothing")
