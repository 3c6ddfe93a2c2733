"""What a solver prototxt needs on disk: its net file, data sources and mean files.

The training rule asks this module for its inputs, so a Caffe user's own
prototxt files drive the workflow's graph: the databases and mean files their
Data layers name become targets that the data rules build.

Where relative paths are looked for: a solver path, and the net paths a solver
names, are read from the working directory when they exist there, else from
`workflow_dir` (the folder a deployed workflow ships its models/ in); this is
the only place that choice is made (`locate`). The files those nets read
(databases, mean files) are always the working directory's: data and results
belong to the run, not to the workflow. A solver's overrides (overrides.py) are
applied here too, so every reader of the SolverFiles sees the same solver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.engine.overrides import apply_overrides
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net, read_solver


def locate(path: str | Path, workflow_dir: str | Path | None = None) -> str:
    """`path` as given when it exists (or is absolute, or no `workflow_dir` is given),
    else under `workflow_dir` when it exists there, else as given (its reader then says
    it is missing)."""
    if workflow_dir is None or Path(path).is_absolute() or Path(path).exists():
        return str(path)
    shipped = Path(workflow_dir) / path
    return str(shipped) if shipped.exists() else str(path)


@dataclass(frozen=True)
class ModelFiles:
    solver: str
    nets: tuple[str, ...]
    data_sources: tuple[str, ...]
    mean_files: tuple[str, ...]

    @property
    def all_inputs(self) -> list[str]:
        return [self.solver, *self.nets, *self.data_sources, *self.mean_files]


def net_paths(solver: caffe_pb2.SolverParameter) -> list[str]:
    """Net prototxt paths a solver names (net, train_net, test_net), in order, once each."""
    paths = [solver.net] if solver.net else []
    if solver.train_net:
        paths.append(solver.train_net)
    paths.extend(solver.test_net)
    return list(dict.fromkeys(paths))


def net_data_files(net: caffe_pb2.NetParameter) -> tuple[list[str], list[str]]:
    """(database sources, mean files) that a net's data layers read."""
    from pipeline_lib.engine.layers.data_layer import data_layer_class

    sources, means = [], []
    for layer in net.layer:
        if (cls := data_layer_class(layer.type)) is not None:
            sources += cls.sources_of(layer)
            means += cls.mean_files_of(layer)
    return sources, means


@dataclass(frozen=True)
class SolverFiles:
    """A solver prototxt read once: its SolverParameter (overrides applied), the net files
    it names (parsed, keyed by the path the solver names; `locations` says where each was
    found) and every file those read. Training and the workflow's graph use this one
    reading."""

    path: str
    param: caffe_pb2.SolverParameter
    nets: dict[str, caffe_pb2.NetParameter]
    locations: dict[str, str]

    @classmethod
    def read(cls, solver_path: str | Path, *, workflow_dir: str | Path | None = None,
             overrides: Mapping[str, Any] | None = None,
             where: str = "overrides") -> SolverFiles:
        """Read `solver_path` and its nets (see `locate` for `workflow_dir`); apply
        `overrides` (overrides.py; `where` names them in messages)."""
        path = locate(solver_path, workflow_dir)
        solver = read_solver(path)
        batch_size = apply_overrides(solver, overrides, where)
        locations = {p: locate(p, workflow_dir) for p in net_paths(solver)}
        nets = {p: read_net(found) for p, found in locations.items()}
        if batch_size is not None:
            set_train_batch_size(solver, nets, batch_size)
        return cls(path, solver, nets, locations)

    @property
    def files(self) -> ModelFiles:
        """Every file the solver reads, as paths relative to the working dir."""
        solver = self.param
        params = list(self.nets.values())
        if solver.HasField("net_param"):
            params.append(solver.net_param)
        if solver.HasField("train_net_param"):
            params.append(solver.train_net_param)
        params.extend(solver.test_net_param)
        sources, means = [], []
        for param in params:
            s, m = net_data_files(param)
            sources += s
            means += m
        return ModelFiles(self.path, tuple(self.locations.values()), tuple(dict.fromkeys(sources)),
                          tuple(dict.fromkeys(means)))


def set_train_batch_size(solver: caffe_pb2.SolverParameter,
                         nets: dict[str, caffe_pb2.NetParameter], batch_size: int) -> None:
    """Give the data layers of the train net (those its TRAIN state includes) `batch_size`,
    in memory: in `solver`'s net_param/train_net_param, or in the parsed net file."""
    from pipeline_lib.engine.layers.data_layer import data_layer_class
    from pipeline_lib.engine.net import layer_included
    from pipeline_lib.engine.training.nets import merged_state

    if solver.HasField("net_param") or solver.HasField("train_net_param"):
        net = solver.train_net_param if solver.HasField("train_net_param") else solver.net_param
    else:
        net = nets[solver.train_net or solver.net]
    state = merged_state(caffe_pb2.TRAIN, net,
                         solver.train_state if solver.HasField("train_state") else None)
    for layer in net.layer:
        if (cls := data_layer_class(layer.type)) is not None and layer_included(layer, state):
            cls.set_batch_size(layer, batch_size)
