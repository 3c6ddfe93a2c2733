"""What a solver prototxt needs on disk: its net file, data sources and mean files.

The training rule asks this module for its inputs, so a Caffe user's own
prototxt files drive the workflow's graph: the databases and mean files their
Data layers name become targets that the data rules build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.prototxt import read_net, read_solver


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
    """A solver prototxt read once: its SolverParameter, the net files it names (parsed,
    by path) and every file those read. Training and the workflow's graph use this one
    reading."""

    path: str
    param: caffe_pb2.SolverParameter
    nets: dict[str, caffe_pb2.NetParameter]

    @classmethod
    def read(cls, solver_path: str | Path) -> SolverFiles:
        solver = read_solver(solver_path)
        return cls(str(solver_path), solver, {p: read_net(p) for p in net_paths(solver)})

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
        return ModelFiles(self.path, tuple(self.nets), tuple(dict.fromkeys(sources)),
                          tuple(dict.fromkeys(means)))
