"""pycaffe's solvers: `get_solver(path)`, `SGDSolver(path)` and the other update rules.

    solver = get_solver("lenet_solver.prototxt")     # the type the file names
    solver = SGDSolver("lenet_solver.prototxt")      # SGD, whatever the file says
    solver.net.forward(); solver.test_nets[0].forward()
    solver.step(1); solver.net.params["conv1"][0].diff
    solver.solve()                                    # to max_iter (or solve(resume=...))

The training is the engine's Solver (`engine/training/solver.py`), nothing else;
`net` and `test_nets` are `api.Net` faces on its nets, so their blobs are the ones
it trains. As in Caffe, relative paths in the solver file are relative to the
working directory; without a `snapshot_prefix`, snapshots go beside the solver file
under its name. The device and seed are those of `pipeline_lib.mode`
(set_mode_gpu, set_random_seed; the solver's own `random_seed` wins). Metrics are
kept in memory (`solver.metrics`), not written to a file.
"""

from __future__ import annotations

import os

from pipeline_lib import mode
from pipeline_lib.api import Net
from pipeline_lib.engine.layers.python_layer import modules_beside
from pipeline_lib.engine.model_files import net_paths
from pipeline_lib.engine.training.metrics import MetricsTable
from pipeline_lib.engine.training.parameters import default_snapshot_prefix
from pipeline_lib.engine.training.solver import Solver as EngineSolver
from pipeline_lib.proto import caffe_pb2

SolverSource = str | os.PathLike | caffe_pb2.SolverParameter


class Solver:
    """A solver built from a solver prototxt (path) or a SolverParameter."""

    #: the update rule this class forces (None: the file's `type`)
    rule: str | None = None

    def __init__(self, solver: SolverSource):
        from pipeline_lib.proto.prototxt import read_solver

        if isinstance(solver, caffe_pb2.SolverParameter):
            sp = caffe_pb2.SolverParameter()
            sp.CopyFrom(solver)
        else:
            sp = read_solver(solver)
            if not sp.snapshot_prefix:
                sp.snapshot_prefix = default_snapshot_prefix(solver)
        if self.rule is not None:
            sp.ClearField("solver_type")
            sp.type = self.rule
        if sp.random_seed < 0 and mode.seed_was_set():
            sp.random_seed = mode.seed()
        files = net_paths(sp) if isinstance(solver, caffe_pb2.SolverParameter) else \
            [solver, *net_paths(sp)]
        with modules_beside(*files):
            self.engine = EngineSolver(sp, xp=mode.device().xp, metrics=MetricsTable(None))
        self.net = Net.wrap(self.engine.net)
        self.test_nets = [Net.wrap(net) for net in self.engine.test_nets]

    @property
    def iter(self) -> int:
        return self.engine.iter

    @property
    def param(self) -> caffe_pb2.SolverParameter:
        return self.engine.param

    @property
    def type(self) -> str:
        return self.engine.type

    @property
    def metrics(self) -> MetricsTable:
        return self.engine.metrics

    def step(self, iters: int) -> None:
        """Train `iters` iterations (testing and snapshotting when due, as Caffe)."""
        self.engine.step(int(iters))

    def solve(self, resume: str | os.PathLike | None = None) -> None:
        """Train to max_iter, from a .solverstate when `resume` names one."""
        self.engine.solve(resume)

    def snapshot(self) -> tuple[str, str]:
        """Write `<prefix>_iter_<N>.caffemodel` and `.solverstate`; return both paths."""
        return self.engine.snapshot()

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from a .solverstate."""
        self.engine.restore(path)

    def test_all(self) -> list:
        """Run every test net's test (test_iter batches each), as at a test interval."""
        return self.engine.test_all()

    def share_weights(self, other: Net) -> None:
        """Make `other` use this solver's learned blobs (pycaffe's share_weights)."""
        other.share_with(self.net)

    def close(self) -> None:
        """Stop the data layers' prefetch threads."""
        self.engine.close()

    def __enter__(self) -> Solver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type}, iter={self.iter}, net={self.net.name!r})"


class SGDSolver(Solver):
    rule = "SGD"


class NesterovSolver(Solver):
    rule = "Nesterov"


class AdaGradSolver(Solver):
    rule = "AdaGrad"


class RMSPropSolver(Solver):
    rule = "RMSProp"


class AdaDeltaSolver(Solver):
    rule = "AdaDelta"


class AdamSolver(Solver):
    rule = "Adam"


def get_solver(solver: SolverSource) -> Solver:
    """A solver of the type its file names (`type`, or the old `solver_type`): an
    SGDSolver for SGD, an AdamSolver for Adam, ..."""
    from pipeline_lib.engine.solvers import solver_type
    from pipeline_lib.proto.prototxt import read_solver

    sp = solver if isinstance(solver, caffe_pb2.SolverParameter) else read_solver(solver)
    classes = {cls.rule: cls for cls in Solver.__subclasses__()}
    solver_class = classes.get(solver_type(sp), Solver)
    if isinstance(solver, caffe_pb2.SolverParameter):
        return solver_class(sp)
    return solver_class(solver)
