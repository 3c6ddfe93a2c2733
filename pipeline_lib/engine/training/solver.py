"""The Solver: Caffe's training loop over a train net and its test nets.

Follows Caffe's `Solver`/`SGDSolver` (solver.cpp, sgd_solver.cpp): nets from
`net`/`net_param`/`train_net(_param)`/`test_net(_param)`, testing every
`test_interval` iterations (outputs averaged over `test_iter` batches),
`display` with Caffe's smoothed loss (`average_loss`), `iter_size`
accumulation, the learning-rate policy, the update rule of `type`, snapshots
every `snapshot` iterations and after training, and the same log lines as
Caffe, in glog form (so `parse_log.py` reads them).

Where we differ from Caffe, on purpose:
- Randomness: one `numpy.random.Generator`, seeded from `random_seed`, feeds
  every layer of every net. Caffe takes `random_seed: -1` (the default) to
  mean "seed from the system's entropy"; here -1 means seed 0, so runs are
  reproducible by default.
- Resume is exact: the .solverstate also holds `resume_state_json` (the
  Generator's state and each net's layer states, i.e. data positions), so
  training 0 -> N, then resuming -> M gives the same bits as 0 -> M.
- Divergence: a non-finite training loss stops the run with `DivergenceError`
  naming the iteration and the first layer whose top is not finite. A snapshot
  `<prefix>_iter_<N>.diverged.{caffemodel,solverstate}` is written first: the
  weights and history as they were before iteration N's update (the result
  of iteration N-1; the error says whether they are still finite), with the
  random and data state of the start of iteration N, so resuming from it
  replays the failure. No copy of the weights is kept per iteration.
- Output averages over test batches are accumulated in float64.
- HDF5 snapshots (`snapshot_format: HDF5`) are not supported.
"""

from __future__ import annotations

import enum
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from pipeline_lib.core import glog
from pipeline_lib.core.backend import get_array_module, to_host
from pipeline_lib.engine.net import Net, NetError
from pipeline_lib.engine.solvers import SolverParameterError, make_update_rule, solver_type
from pipeline_lib.engine.solvers.lr_policy import current_step, learning_rate
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import blob_proto_to_array
from pipeline_lib.proto.snapshot import (
    load_caffemodel,
    load_solverstate,
    resolve_learned_net,
    save_caffemodel,
    save_solverstate,
    snapshot_filename,
)

RESUME_STATE_VERSION = 1


class SolverAction(enum.IntEnum):
    """What an action request (e.g. a signal) asks of a running solver (Caffe's SolverAction)."""

    NONE = 0
    STOP = 1  # stop training; Solve still snapshots if snapshot_after_train
    SNAPSHOT = 2  # write a snapshot now and continue


def action_from_name(name: str) -> SolverAction:
    """Caffe's `-sigint_effect`/`-sighup_effect` words: stop, snapshot, none."""
    try:
        return {"stop": SolverAction.STOP, "snapshot": SolverAction.SNAPSHOT,
                "none": SolverAction.NONE}[name]
    except KeyError:
        raise ValueError(f"unknown signal effect {name!r}; expected stop, snapshot or none"
                         ) from None


class SignalHandler:
    """Turns SIGINT/SIGTERM and SIGHUP into solver actions, as Caffe's SignalHandler.

    Use as a context manager (installs handlers, restores the old ones) and
    pass it as the solver's `action_request`: each call returns and clears the
    pending action. Install from the main thread only.
    """

    def __init__(self, sigint_effect: str = "stop", sighup_effect: str = "snapshot"):
        self.effects = {signal.SIGINT: action_from_name(sigint_effect),
                        signal.SIGTERM: action_from_name(sigint_effect)}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = action_from_name(sighup_effect)
        self._pending: list[int] = []
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self._pending.append(signum)

    def __enter__(self) -> SignalHandler:
        for signum in self.effects:
            self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old.clear()

    def __call__(self) -> SolverAction:
        # Caffe checks SIGHUP before SIGINT; one pending signal is answered per call.
        if not self._pending:
            return SolverAction.NONE
        hup = getattr(signal, "SIGHUP", None)
        signum = hup if hup in self._pending else self._pending[0]
        self._pending.remove(signum)
        return self.effects[signum]


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, message: str, *, iteration: int, layer: str | None, blob: str | None,
                 snapshot: tuple[str, str] | None):
        super().__init__(message)
        self.iteration = iteration
        self.layer = layer
        self.blob = blob
        self.snapshot = snapshot


def fmt(value: float) -> str:
    """A number as Caffe's logs print it (C++ stream default: 6 significant digits)."""
    return format(float(value), ".6g")


def _read_net_file(path: str) -> caffe_pb2.NetParameter:
    from pipeline_lib.proto.prototxt import read_net

    return read_net(path)


def _merged_state(phase: int, net_param: caffe_pb2.NetParameter,
                  override: caffe_pb2.NetState | None) -> caffe_pb2.NetState:
    """Caffe's precedence: the phase, then the net's own state, then the solver's."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(net_param.state)
    if override is not None:
        state.MergeFrom(override)
    return state


class Solver:
    """Trains a net as Caffe's solver does; see the module docstring for the differences.

    solver_param: the SolverParameter (upgraded: see proto.prototxt.read_solver).
    net_param: replaces the solver's generic net (`net` file or `net_param`),
        e.g. a net whose data sources were patched in memory.
    xp, dtype: array module (NumPy/CuPy) and float type of the nets.
    log: a GlogLogger (default: glog.default_logger()).
    metrics: a MetricsTable, a CSV path, or None (then `<prefix>_metrics.csv`
        when there is a snapshot prefix, else kept in memory only).
    snapshot_prefix: replaces `snapshot_prefix` of the solver.
    stages, level: added to `train_state`, as `caffe train --stage/--level` does.
    action_request: called after each iteration and each test batch; returns
        a SolverAction (e.g. a SignalHandler).
    """

    def __init__(self, solver_param: caffe_pb2.SolverParameter, *,
                 net_param: caffe_pb2.NetParameter | None = None, xp=np, dtype=np.float32,
                 log: glog.GlogLogger | None = None,
                 metrics: MetricsTable | str | os.PathLike | None = None,
                 snapshot_prefix: str | None = None, stages: Iterable[str] | None = None,
                 level: int | None = None,
                 action_request: Callable[[], SolverAction] | None = None):
        sp = caffe_pb2.SolverParameter()
        sp.CopyFrom(solver_param)
        if net_param is not None:
            if sp.HasField("train_net") or sp.HasField("train_net_param"):
                raise SolverParameterError("net_param= replaces the solver's generic net, but "
                                           "this solver names a train_net; patch that instead")
            sp.ClearField("net")
            sp.net_param.CopyFrom(net_param)
        if snapshot_prefix is not None:
            sp.snapshot_prefix = str(snapshot_prefix)
        if level is not None:
            sp.train_state.level = int(level)
        for stage in stages or ():
            sp.train_state.stage.append(stage)
        self.param = sp
        self.type = solver_type(sp)
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.log = log if log is not None else glog.default_logger()
        self.action_request = action_request
        #: called as fn(solver) after every completed iteration (after any snapshot)
        self.on_iteration: list[Callable[[Solver], None]] = []

        if sp.average_loss < 1:
            raise SolverParameterError(f"average_loss must be >= 1, got {sp.average_loss}")
        if sp.iter_size < 1:
            raise SolverParameterError(f"iter_size must be >= 1, got {sp.iter_size}")
        if sp.snapshot_format != caffe_pb2.SolverParameter.BINARYPROTO:
            raise SolverParameterError("snapshot_format HDF5 is not supported; use BINARYPROTO")
        self.log.info("Initializing solver from parameters: \n"
                      + text_format.MessageToString(sp))
        self._check_snapshot_prefix()
        if sp.debug_info:
            self.log.warning("debug_info is not supported; ignoring it")

        self.seed = int(sp.random_seed) if sp.random_seed >= 0 else 0
        self.rng = np.random.default_rng(self.seed)
        if isinstance(metrics, MetricsTable):
            self.metrics = metrics
        elif metrics is not None:
            self.metrics = MetricsTable(metrics)
        else:
            prefix = sp.snapshot_prefix
            self.metrics = MetricsTable(f"{prefix}_metrics.csv" if prefix else None)
        if self.metrics.path is not None and not self.metrics.path.parent.is_dir():
            raise SolverParameterError(f"the metrics file {str(self.metrics.path)!r} is in a "
                                       "directory that does not exist")

        self.net: Net | None = None
        self.test_nets: list[Net] = []
        try:
            self.net = self._init_train_net()
            self.test_nets = self._init_test_nets()
            for net in [self.net, *self.test_nets]:
                self._load_weights(net)
            for test_net in self.test_nets:
                test_net.share_trained_layers_with(self.net)
            self.rule = make_update_rule(sp, self.net.learnable_params, self.net.params_lr,
                                         self.net.params_weight_decay)
        except BaseException:
            self.close()  # stop the data threads of the nets built so far
            raise
        self.history = self.rule.history

        self.iter = 0
        self.current_step = 0
        self.requested_early_exit = False
        self.smoothed_loss = 0.0
        self._losses: list[float] = []
        self._loss_start = 0
        self._restored_smoothing: dict | None = None
        self._t0 = time.perf_counter()
        self._start_state: dict | None = None
        self.log.info("Solver scaffolding done.")

    # -- construction ---------------------------------------------------------------
    def _check_snapshot_prefix(self) -> None:
        """Fail before training, not after it, when snapshots cannot be written."""
        sp = self.param
        if not sp.snapshot and not sp.snapshot_after_train:
            return
        if not sp.snapshot_prefix:
            why = f"snapshot: {sp.snapshot}" if sp.snapshot else "snapshot_after_train"
            raise SolverParameterError(
                f"the solver will write snapshots ({why}) but sets no snapshot_prefix; set "
                "snapshot_prefix (or snapshot: 0 and snapshot_after_train: false)")
        parent = Path(sp.snapshot_prefix).parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise SolverParameterError(
                f"cannot write to snapshot prefix {sp.snapshot_prefix!r}; make sure that the "
                f"directory {str(parent)!r} exists and is writable")

    def _make_net(self, param: caffe_pb2.NetParameter, phase: int,
                  override: caffe_pb2.NetState | None) -> Net:
        param = caffe_pb2.NetParameter.FromString(param.SerializeToString())
        state = _merged_state(phase, param, override)
        param.state.CopyFrom(state)
        return Net(param, phase, xp=self.xp, dtype=self.dtype, rng=self.rng,
                   stages=list(state.stage), level=state.level)

    def _init_train_net(self) -> Net:
        sp = self.param
        fields = ["net", "net_param", "train_net", "train_net_param"]
        given = [f for f in fields if sp.HasField(f)]
        if len(given) != 1:
            raise SolverParameterError(
                "the solver must name exactly one train net with one of "
                f"{', '.join(fields)}; it names {', '.join(given) or 'none'}")
        source = given[0]
        if source in ("net_param", "train_net_param"):
            self.log.info(f"Creating training net specified in {source}.")
            param = getattr(sp, source)
        else:
            path = getattr(sp, source)
            self.log.info(f"Creating training net from {source} file: {path}")
            param = _read_net_file(path)
        override = sp.train_state if sp.HasField("train_state") else None
        return self._make_net(param, caffe_pb2.TRAIN, override)

    def _init_test_nets(self) -> list[Net]:
        sp = self.param
        generic = sp.HasField("net") + sp.HasField("net_param")
        specific = len(sp.test_net_param) + len(sp.test_net)
        if generic:
            if len(sp.test_iter) < specific:
                raise SolverParameterError("test_iter must be given for each test net")
        elif len(sp.test_iter) != specific:
            raise SolverParameterError(f"test_iter must be given for each test net: "
                                       f"{specific} test nets, {len(sp.test_iter)} test_iter")
        count = len(sp.test_iter) if generic else specific
        if sp.test_state and len(sp.test_state) != count:
            raise SolverParameterError(f"test_state must be unset or given once per test net "
                                       f"({count}); got {len(sp.test_state)}")
        if count and sp.test_interval <= 0:
            raise SolverParameterError("test nets need test_interval > 0")
        sources: list[tuple[str, Callable[[], caffe_pb2.NetParameter]]] = []
        for p in sp.test_net_param:
            sources.append(("test_net_param", lambda p=p: p))
        for path in sp.test_net:
            sources.append((f"test_net file: {path}", lambda path=path: _read_net_file(path)))
        for _ in range(count - len(sources)):
            if sp.HasField("net_param"):
                sources.append(("net_param", lambda: sp.net_param))
            else:
                sources.append((f"net file: {sp.net}", lambda: _read_net_file(sp.net)))
        nets = self.test_nets  # filled in place, so a failure can close those built
        for i, (label, get) in enumerate(sources):
            self.log.info(f"Creating test net (#{i}) specified by {label}")
            override = sp.test_state[i] if sp.test_state else None
            nets.append(self._make_net(get(), caffe_pb2.TEST, override))
        return nets

    def _load_weights(self, net: Net) -> None:
        for entry in self.param.weights:
            for name in (n.strip() for n in entry.split(",")):
                if name:
                    self.log.info(f"Finetuning from {name}")
                    net.copy_trained_layers_from(load_caffemodel(name), source=name)

    # -- training ---------------------------------------------------------------------
    def solve(self, resume_file: str | os.PathLike | None = None) -> None:
        """Train to max_iter (from a .solverstate when given), as Caffe's Solver::Solve."""
        sp = self.param
        self.log.info(f"Solving {self.net.name}")
        self.log.info(f"Learning Rate Policy: {sp.lr_policy}")
        self.requested_early_exit = False
        if resume_file is not None:
            self.log.info(f"Restoring previous solver status from {resume_file}")
            self.restore(resume_file)
        self.step(sp.max_iter - self.iter)
        if sp.snapshot_after_train and (not sp.snapshot or self.iter % sp.snapshot != 0):
            self.snapshot()
        if self.requested_early_exit:
            self.log.info("Optimization stopped early.")
            self.metrics.write()
            return
        if sp.display and self.iter % sp.display == 0:
            loss = self.net.forward()
            self._update_smoothed_loss(loss)
            self.log.info(f"Iteration {self.iter}, loss = {fmt(self.smoothed_loss)}")
        if sp.test_interval and self.iter % sp.test_interval == 0:
            self.test_all()
        self.log.info("Optimization Done.")
        self.metrics.write()

    def step(self, iters: int) -> None:
        """Run `iters` training iterations (Caffe's Solver::Step)."""
        sp = self.param
        stop_iter = self.iter + iters
        smoothing, self._restored_smoothing = self._restored_smoothing, None
        if smoothing is not None:  # continue the interrupted run's average exactly
            self._losses = [float(v) for v in smoothing["losses"]]
            self.smoothed_loss = float(smoothing["smoothed_loss"])
            self._loss_start = int(smoothing["start"])
        else:  # Caffe restarts the average with every Step
            self._losses, self.smoothed_loss, self._loss_start = [], 0.0, self.iter
        timer, iterations_last = time.perf_counter(), self.iter
        while self.iter < stop_iter:
            self._start_state = None
            self.net.clear_param_diffs()
            if (sp.test_interval and self.iter % sp.test_interval == 0
                    and (self.iter > 0 or sp.test_initialization)):
                self._start_state = self.resume_state()
                self.test_all()
                if self.requested_early_exit:
                    break
            if self._start_state is None:
                self._start_state = self.resume_state()
            display = bool(sp.display) and self.iter % sp.display == 0
            loss = 0.0
            for _ in range(sp.iter_size):
                one = self.net.forward_backward()
                if not math.isfinite(one):
                    self._diverged(one)
                loss += one
            loss /= sp.iter_size
            self._update_smoothed_loss(loss)
            outputs = None
            if display:
                lapse = time.perf_counter() - timer
                per_s = (self.iter - iterations_last) / (lapse or 1.0)
                self.log.info(f"Iteration {self.iter} ({fmt(per_s)} iter/s, {fmt(lapse)}s/"
                              f"{sp.display} iters), loss = {fmt(self.smoothed_loss)}")
                timer, iterations_last = time.perf_counter(), self.iter
                outputs = self._log_outputs(self.net, "Train")
            rate = self._apply_update(display)
            if outputs is not None:
                self.metrics.add_train(self.iter - 1, lr=rate, loss=loss,
                                       smoothed_loss=self.smoothed_loss,
                                       seconds=time.perf_counter() - self._t0,
                                       outputs=outputs)
            request = self._requested_action()
            if (sp.snapshot and self.iter % sp.snapshot == 0) or request == SolverAction.SNAPSHOT:
                self.snapshot()
            for callback in self.on_iteration:
                callback(self)
            if request == SolverAction.STOP:
                self.requested_early_exit = True
                break

    def _apply_update(self, display: bool) -> float:
        """Caffe's SGDSolver::ApplyUpdate: rate, clipping, the rule, iter += 1."""
        previous = self.current_step
        self.current_step = current_step(self.param, self.iter, previous)
        if self.param.lr_policy == "multistep" and self.current_step != previous:
            self.log.info(f"MultiStep Status: Iteration {self.iter}, step = {self.current_step}")
        rate = learning_rate(self.param, self.iter, self.current_step, self.dtype)
        if display:
            self.log.info(f"Iteration {self.iter}, lr = {fmt(rate)}")
        clipped = self.rule.apply(rate, self.iter)
        if clipped is not None:
            norm, scale = clipped
            self.log.info(f"Gradient clipping: scaling down gradients (L2 norm {fmt(norm)} > "
                          f"{fmt(self.param.clip_gradients)}) by scale factor {fmt(scale)}")
        self.iter += 1
        return rate

    def _update_smoothed_loss(self, loss: float) -> None:
        average = self.param.average_loss
        if len(self._losses) < average:
            self._losses.append(loss)
            n = len(self._losses)
            self.smoothed_loss = (self.smoothed_loss * (n - 1) + loss) / n
        else:
            idx = (self.iter - self._loss_start) % average
            self.smoothed_loss += (loss - self._losses[idx]) / average
            self._losses[idx] = loss

    def _requested_action(self) -> SolverAction:
        if self.action_request is None:
            return SolverAction.NONE
        return SolverAction(self.action_request())

    def _log_outputs(self, net: Net, kind: str, values: list[np.ndarray] | None = None
                     ) -> dict[str, float]:
        """Log each element of each net output as Caffe does; return {name: value}."""
        index, out = 0, {}
        for j, name in enumerate(net.output_blob_names):
            array = values[j] if values is not None else to_host(net.blobs[name].data).ravel()
            weight = net.loss_weights.get(name, 0.0)
            for k, raw in enumerate(array):
                v = float(raw)
                note = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
                self.log.info(f"    {kind} net output #{index}: {name} = {fmt(v)}{note}")
                out[name if array.size == 1 else f"{name}_{k}"] = v
                index += 1
        return out

    # -- testing -----------------------------------------------------------------------
    def test_all(self) -> list[dict[str, float] | None]:
        results = []
        for i in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            results.append(self.test(i))
        return results

    def test(self, test_net_id: int = 0) -> dict[str, float] | None:
        """Caffe's Solver::Test: mean of each output over test_iter batches (None if stopped)."""
        sp = self.param
        self.log.info(f"Iteration {self.iter}, Testing net (#{test_net_id})")
        net = self.test_nets[test_net_id]
        net.share_trained_layers_with(self.net)
        n = sp.test_iter[test_net_id]
        sums: list[np.ndarray] | None = None
        loss = 0.0
        for _ in range(n):
            request = self._requested_action()
            while request != SolverAction.NONE:
                if request == SolverAction.SNAPSHOT:
                    self.snapshot()
                elif request == SolverAction.STOP:
                    self.requested_early_exit = True
                request = self._requested_action()
            if self.requested_early_exit:
                break
            iter_loss = net.forward()
            if sp.test_compute_loss:
                loss += iter_loss
            batch = [to_host(net.blobs[name].data).astype(np.float64).ravel()
                     for name in net.output_blob_names]
            if sums is None:
                sums = batch
            else:
                for total, b in zip(sums, batch):
                    total += b
        if self.requested_early_exit:
            self.log.info("Test interrupted.")
            return None
        if sp.test_compute_loss and n:
            self.log.info(f"Test loss: {fmt(loss / n)}")
        means = [total / n for total in sums] if sums is not None else []
        outputs = self._log_outputs(net, "Test", means)
        weighted = sum(float(net.loss_weights.get(name, 0.0) * m.sum())
                       for name, m in zip(net.output_blob_names, means))
        self.metrics.add_test(self.iter, test_net_id, loss=weighted, outputs=outputs,
                              seconds=time.perf_counter() - self._t0)
        self.metrics.write()
        return outputs

    # -- snapshots -----------------------------------------------------------------------
    def snapshot(self, *, tag: str = "", resume_state: dict | None = None) -> tuple[str, str]:
        """Write `<prefix>_iter_<N>[tag].caffemodel`, then `.solverstate`; return both paths."""
        sp = self.param
        if not sp.snapshot_prefix:
            raise SolverParameterError("cannot snapshot: the solver has no snapshot_prefix")
        base = snapshot_filename(sp.snapshot_prefix, self.iter, tag)
        model_path, state_path = base + ".caffemodel", base + ".solverstate"
        self.log.info(f"Snapshotting to binary proto file {model_path}")
        save_caffemodel(self.net, model_path, write_diff=sp.snapshot_diff)
        self.log.info(f"Snapshotting solver state to binary proto file {state_path}")
        save_solverstate(state_path, iteration=self.iter, learned_net=Path(model_path).name,
                         history=self.history, current_step=self.current_step,
                         resume_state_json=self.resume_state_json(resume_state))
        self.metrics.write()
        return model_path, state_path

    def resume_state(self) -> dict:
        """What an exact resume needs beyond Caffe's fields: the Generator's state and
        each net's layer states (data positions), as of now."""
        return {"version": RESUME_STATE_VERSION, "solver_type": self.type,
                "rng": self.rng.bit_generator.state, "train_net": self.net.get_state(),
                "test_nets": [net.get_state() for net in self.test_nets],
                "smoothing": {"losses": list(self._losses), "smoothed_loss": self.smoothed_loss,
                              "start": self._loss_start}}

    def resume_state_json(self, state: dict | None = None) -> str:
        """`state` (default: `resume_state()`) as canonical JSON."""
        state = self.resume_state() if state is None else state
        return json.dumps(state, sort_keys=True, separators=(",", ":"))

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from a .solverstate (ours, or Caffe's: then data and randomness restart)."""
        state = load_solverstate(path)
        self.iter = state.iter
        if state.HasField("learned_net") and state.learned_net:
            model = resolve_learned_net(path, state.learned_net)
            copied = self.net.copy_trained_layers_from(load_caffemodel(model), source=str(model))
            # A snapshot of this net holds every layer with weights; a caffemodel cut short
            # between two layers still parses, so look for the ones it lacks.
            missing = [name for name, layer in zip(self.net.layer_names, self.net.layers)
                       if layer.blobs and name not in copied]
            if missing:
                raise NetError(f"{model}: holds no weights for layer(s) "
                               f"{', '.join(map(repr, missing))} of this net; the snapshot is "
                               "truncated or from another net")
        self.current_step = state.current_step
        if len(state.history) != len(self.history):
            raise SolverParameterError(
                f"{path}: holds {len(state.history)} history blobs but the {self.type} solver "
                f"of this net needs {len(self.history)}")
        for i, (bp, h) in enumerate(zip(state.history, self.history)):
            values = blob_proto_to_array(bp)
            if values.size != h.size:
                raise SolverParameterError(f"{path}: history blob {i} has shape "
                                           f"{list(values.shape)} but this net needs "
                                           f"{list(h.shape)}")
            h[...] = self.xp.asarray(values.reshape(h.shape), dtype=h.dtype)
        if state.resume_state_json:
            self._restore_resume_state(path, state.resume_state_json)
        else:
            self.log.warning(f"{path} has no resume_state_json (written by Caffe?): data and "
                             "random state start afresh, so the run will not equal an "
                             "uninterrupted one")
        self.metrics.resume(self.iter)

    def _restore_resume_state(self, path, text: str) -> None:
        try:
            state = json.loads(text)
            version = state["version"]
        except (ValueError, KeyError, TypeError) as e:
            raise SolverParameterError(f"{path}: unreadable resume_state_json: {e}") from None
        if version != RESUME_STATE_VERSION:
            raise SolverParameterError(f"{path}: resume_state_json version {version}, expected "
                                       f"{RESUME_STATE_VERSION}")
        if state["solver_type"] != self.type:
            raise SolverParameterError(f"{path}: written by a {state['solver_type']} solver, "
                                       f"this one is {self.type}")
        if len(state["test_nets"]) != len(self.test_nets):
            raise SolverParameterError(f"{path}: state of {len(state['test_nets'])} test nets, "
                                       f"this solver has {len(self.test_nets)}")
        self.rng.bit_generator.state = state["rng"]
        self.net.set_state(state["train_net"])
        for net, net_state in zip(self.test_nets, state["test_nets"]):
            net.set_state(net_state)
        self._restored_smoothing = state.get("smoothing")

    # -- divergence -------------------------------------------------------------------
    def _diverged(self, loss: float) -> None:
        layer, blob = first_nonfinite_top(self.net)
        bad_params = [name for name, layer_obj in zip(self.net.layer_names, self.net.layers)
                      if any(not _all_finite(b.data) for b in layer_obj.blobs)]
        where = (f"first non-finite top: blob {blob!r} of layer {layer!r}" if layer
                 else "every layer's top is finite")
        weights = (f"the weights of {', '.join(repr(n) for n in bad_params)} are already "
                   "non-finite (an earlier update diverged)" if bad_params
                   else "the weights are finite")
        paths = None
        if self.param.snapshot_prefix:
            paths = self.snapshot(tag=".diverged", resume_state=self._start_state)
        message = (f"training diverged at iteration {self.iter}: loss = {loss}; {where}; "
                   f"{weights}")
        if paths:
            message += f"; state before this iteration's update saved to {paths[1]}"
        self.log.error(message)
        self.metrics.write()
        raise DivergenceError(message, iteration=self.iter, layer=layer, blob=blob,
                              snapshot=paths)

    def close(self) -> None:
        """Stop the nets' data threads."""
        for net in [self.net, *self.test_nets]:
            if net is not None:
                net.close()

    def __enter__(self) -> Solver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _all_finite(array) -> bool:
    return bool(get_array_module(array).isfinite(array).all())


def first_nonfinite_top(net: Net) -> tuple[str | None, str | None]:
    """(layer name, blob name) of the first layer, in forward order, with a non-finite top.

    An in-place top is blamed on the layer that first produced the blob.
    """
    for name, tops in zip(net.layer_names, net.tops):
        for top in tops:
            if not _all_finite(top.data):
                return name, top.name
    return None, None
