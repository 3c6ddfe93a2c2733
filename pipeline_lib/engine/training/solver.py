"""The Solver: Caffe's training loop over a train net and its test nets.

Follows Caffe's `Solver`/`SGDSolver` (solver.cpp, sgd_solver.cpp): tests every
`test_interval` iterations, `display` with the smoothed loss, `iter_size`
accumulation, the learning-rate policy, the update rule of `type`, snapshots,
and Caffe's log lines in glog form (so `parse_log.py` reads them). The nets
come from the SolverParameter as Caffe chooses them (nets.py).

Where we differ from Caffe, on purpose:
- Randomness: one `numpy.random.Generator`, seeded from `random_seed`, feeds
  every layer of every net. Caffe takes `random_seed: -1` (the default) to
  mean "seed from the system's entropy"; here -1 means seed 0, so runs are
  reproducible by default.
- Resume is exact (resume.py): training 0 -> N, then resuming -> M gives the
  same bits as 0 -> M. A snapshot, whenever it is asked for, is of an
  iteration boundary: exactly the state the next iteration starts from. Inside
  iteration N before its update (its test pass, its forward/backward) that is
  the state captured at N's start; after the update it is the current state.
  `snapshot` alone applies this rule, for every caller.
- Divergence (divergence.py): a non-finite training loss stops the run with
  `DivergenceError`. A snapshot `<prefix>_iter_<N>.diverged.{caffemodel,
  solverstate}` is written first: by the rule above, the state of the start
  of iteration N, so resuming from it replays the failure. No copy of the
  weights is kept per iteration.
- Output averages over test batches are accumulated in float64.
- HDF5 snapshots (`snapshot_format: HDF5`) are not supported.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from pipeline_lib.core import glog
from pipeline_lib.core.backend import to_host
from pipeline_lib.engine.net import Net
from pipeline_lib.engine.solvers import SolverParameterError, make_update_rule, solver_type
from pipeline_lib.engine.solvers.lr_policy import current_step, learning_rate
from pipeline_lib.engine.training import nets, resume
from pipeline_lib.engine.training.divergence import divergence_error
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.engine.training.outputs import as_printed, fmt, log_outputs, net_outputs
from pipeline_lib.engine.training.parameters import (
    check_solver,
    metrics_table,
    patched,
    run_seed,
)
from pipeline_lib.engine.training.signals import SolverAction
from pipeline_lib.engine.training.smoothed_loss import SmoothedLoss
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.snapshot import save_caffemodel, save_solverstate, snapshot_filename


class Solver:
    """Trains a net as Caffe's solver does; see the module docstring for the differences.

    solver_param: the SolverParameter (upgraded: see proto.prototxt.read_solver).
    net_param, snapshot_prefix, stages, level: see parameters.patched.
    net_files: net files already read, by path (read from disk otherwise).
    xp, dtype: array module (NumPy/CuPy) and float type of the nets.
    log: a GlogLogger (default: glog.default_logger()).
    metrics: a MetricsTable, a CSV path, or None (then `<prefix>_metrics.csv`
        when there is a snapshot prefix, else kept in memory only).
    action_request: called after each iteration and before each test batch; returns
        a SolverAction (e.g. a SignalHandler).
    """

    def __init__(self, solver_param: caffe_pb2.SolverParameter, *,
                 net_param: caffe_pb2.NetParameter | None = None,
                 net_files: Mapping[str, caffe_pb2.NetParameter] | None = None, xp=np,
                 dtype=np.float32, log: glog.GlogLogger | None = None,
                 metrics: MetricsTable | str | os.PathLike | None = None,
                 snapshot_prefix: str | None = None, stages: Iterable[str] | None = None,
                 level: int | None = None,
                 action_request: Callable[[], SolverAction] | None = None):
        self.param = sp = patched(solver_param, net_param, snapshot_prefix, stages, level)
        self.type = solver_type(sp)
        self.xp, self.dtype = xp, np.dtype(dtype)
        self.log = log if log is not None else glog.default_logger()
        self.action_request = action_request
        #: called as fn(solver) after every completed iteration (after any snapshot)
        self.on_iteration: list[Callable[[Solver], None]] = []
        #: called as fn(solver, test_net_id, batches_done, batches) after each test batch
        self.on_test_batch: list[Callable[[Solver, int, int, int], None]] = []
        self.iteration_loss = math.nan  # the last iteration's loss (averaged over iter_size)
        check_solver(sp, self.log)
        self.seed = run_seed(sp)
        self.rng = np.random.default_rng(self.seed)
        self.metrics = metrics_table(metrics, sp.snapshot_prefix)
        built: list[Net] = []  # train net, then test nets, so a failure can close them
        try:
            nets.build(built, sp, xp=xp, dtype=self.dtype, rng=self.rng, net_files=net_files,
                       log=self.log)
            self.net, self.test_nets = built[0], built[1:]
            self.rule = make_update_rule(sp, self.net.learnable_params, self.net.params_lr,
                                         self.net.params_weight_decay)
        except BaseException:
            for net in built:
                net.close()  # stop the data threads of the nets built so far
            raise
        for net in built:
            net.log = self.log
        for test_net in self.test_nets:
            test_net.debug_info = sp.debug_info  # the train net's is set per iteration
        self.history = self.rule.history
        self.iter = self.current_step = 0
        self.requested_early_exit = False
        self.loss = SmoothedLoss(sp.average_loss)
        self.restored_smoothing: dict | None = None  # set by resume.restore
        self._t0 = self._timer = time.perf_counter()
        self._timer_iter = 0
        # The resume state of the boundary the run is past, while the current state is not
        # it (inside an iteration before its update, during the final test); else None.
        self._boundary: dict | None = None
        self.log.info("Solver scaffolding done.")

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
        self._boundary = resume.capture(self)  # the last display and test read on past it
        if sp.display and self.iter % sp.display == 0:
            loss = self.net.forward()
            self.loss.update(loss, self.iter)
            self.log.info(f"Iteration {self.iter}, loss = {fmt(self.loss.value)}")
            self.metrics.add_train(self.iter, lr=as_printed(self._rate()), loss=loss,
                                   smoothed_loss=self.loss.value,
                                   seconds=time.perf_counter() - self._t0,
                                   outputs=net_outputs(self.net))
        if sp.test_interval and self.iter % sp.test_interval == 0:
            self.test_all()
        self.log.info("Optimization Done.")
        self.metrics.write()

    def step(self, iters: int) -> None:
        """Run `iters` training iterations (Caffe's Solver::Step)."""
        stop_iter = self.iter + iters
        self.loss = SmoothedLoss(self.param.average_loss, self.iter)  # Caffe restarts it
        if self.restored_smoothing is not None:  # continue the interrupted run's average
            self.loss.restore(self.restored_smoothing)
            self.restored_smoothing = None
        self._timer, self._timer_iter = time.perf_counter(), self.iter
        while self.iter < stop_iter and self._iteration():
            pass

    def _iteration(self) -> bool:
        """One iteration: test if due, forward/backward, update, snapshot if due or asked.
        False when the run is to stop."""
        sp = self.param
        self.net.clear_param_diffs()
        self._boundary = resume.capture(self)
        if (sp.test_interval and self.iter % sp.test_interval == 0
                and (self.iter > 0 or sp.test_initialization)):
            self.test_all()
            if self.requested_early_exit:
                return False
        display = bool(sp.display) and self.iter % sp.display == 0
        self.net.debug_info = display and sp.debug_info  # as Caffe: on display iterations
        loss = self.iteration_loss = self._forward_backward()
        self.loss.update(loss, self.iter)
        outputs = self._display() if display else None
        rate = self._apply_update(display)
        self._boundary = None  # the iteration is complete: the current state is the boundary
        if outputs is not None:
            self.metrics.add_train(self.iter - 1, lr=as_printed(rate), loss=loss,
                                   smoothed_loss=self.loss.value,
                                   seconds=time.perf_counter() - self._t0, outputs=outputs)
        request = self._requested_action()
        if (sp.snapshot and self.iter % sp.snapshot == 0) or request == SolverAction.SNAPSHOT:
            self.snapshot()
        for callback in self.on_iteration:
            callback(self)
        if request == SolverAction.STOP:
            self.requested_early_exit = True
        return request != SolverAction.STOP

    def _forward_backward(self) -> float:
        """The loss of `iter_size` forward/backward passes, averaged; stops on divergence."""
        loss = 0.0
        for _ in range(self.param.iter_size):
            one = self.net.forward_backward()
            if not math.isfinite(one):
                self._diverged(one)
            loss += one
        return loss / self.param.iter_size

    def _display(self) -> dict[str, float]:
        lapse = time.perf_counter() - self._timer
        per_s = (self.iter - self._timer_iter) / (lapse or 1.0)
        self.log.info(f"Iteration {self.iter} ({fmt(per_s)} iter/s, {fmt(lapse)}s/"
                      f"{self.param.display} iters), loss = {fmt(self.loss.value)}")
        self._timer, self._timer_iter = time.perf_counter(), self.iter
        return log_outputs(self.log, self.net, "Train")

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

    def _rate(self) -> float:
        """The learning rate the update of the current iteration uses (or would use)."""
        step = current_step(self.param, self.iter, self.current_step)
        return learning_rate(self.param, self.iter, step, self.dtype)

    def _requested_action(self) -> SolverAction:
        if self.action_request is None:
            return SolverAction.NONE
        return SolverAction(self.action_request())

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
        self.log.info(f"Iteration {self.iter}, Testing net (#{test_net_id})")
        net = self.test_nets[test_net_id]
        net.share_trained_layers_with(self.net)
        n = self.param.test_iter[test_net_id]
        sums, loss = self._test_batches(net, n, test_net_id)
        if self.requested_early_exit:
            self.log.info("Test interrupted.")
            return None
        if self.param.test_compute_loss and n:
            self.log.info(f"Test loss: {fmt(loss / n)}")
        means = [total / n for total in sums] if sums is not None else []
        outputs = log_outputs(self.log, net, "Test", means)
        weighted = sum(float(net.loss_weights.get(name, 0.0) * m.sum())
                       for name, m in zip(net.output_blob_names, means))
        self.metrics.add_test(self.iter, test_net_id, loss=weighted, outputs=outputs,
                              lr=as_printed(self._rate()), seconds=time.perf_counter() - self._t0)
        self.metrics.write()
        return outputs

    def _test_batches(self, net: Net, n: int, test_net_id: int = 0
                      ) -> tuple[list[np.ndarray] | None, float]:
        """Sums (float64) of each output over `n` forward passes, and of the loss;
        answers action requests before each batch."""
        sums: list[np.ndarray] | None = None
        loss = 0.0
        for done in range(n):
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
            if self.param.test_compute_loss:
                loss += iter_loss
            batch = [to_host(net.blobs[name].data).astype(np.float64).ravel()
                     for name in net.output_blob_names]
            if sums is None:
                sums = batch
            else:
                for total, b in zip(sums, batch):
                    total += b
            for callback in self.on_test_batch:
                callback(self, test_net_id, done + 1, n)
        return sums, loss

    # -- snapshots and resume ------------------------------------------------------------
    def snapshot(self, *, tag: str = "") -> tuple[str, str]:
        """Write `<prefix>_iter_<N>[tag].caffemodel`, then `.solverstate`, of the iteration
        boundary (see the module docstring); return both paths.

        The metrics go first: the .solverstate is what a resume looks for, so once it
        exists the rows before it are on disk too, whenever the process is killed.
        """
        sp = self.param
        if not sp.snapshot_prefix:
            raise SolverParameterError("cannot snapshot: the solver has no snapshot_prefix")
        state = self._boundary if self._boundary is not None else resume.capture(self)
        base = snapshot_filename(sp.snapshot_prefix, self.iter, tag)
        model_path, state_path = base + ".caffemodel", base + ".solverstate"
        self.metrics.write()
        self.log.info(f"Snapshotting to binary proto file {model_path}")
        save_caffemodel(self.net, model_path, write_diff=sp.snapshot_diff)
        self.log.info(f"Snapshotting solver state to binary proto file {state_path}")
        save_solverstate(state_path, iteration=self.iter, learned_net=Path(model_path).name,
                         history=self.history, current_step=self.current_step,
                         resume_state_json=resume.to_json(state))
        return model_path, state_path

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from a .solverstate (see resume.restore)."""
        resume.restore(self, path)
        self._boundary = None

    def _diverged(self, loss: float) -> None:
        paths = None
        if self.param.snapshot_prefix:
            paths = self.snapshot(tag=".diverged")
        error = divergence_error(self.net, self.iter, loss, paths)
        self.log.error(str(error))
        self.metrics.write()
        raise error

    def close(self) -> None:
        """Stop the nets' data threads."""
        for net in [self.net, *self.test_nets]:
            net.close()

    def __enter__(self) -> Solver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
