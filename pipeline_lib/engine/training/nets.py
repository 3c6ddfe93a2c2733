"""A solver's train net and test nets, chosen by Caffe's precedence rules (solver.cpp).

The train net comes from exactly one of `net`, `net_param`, `train_net` and
`train_net_param`; the test nets from `test_net_param` entries, then
`test_net` files, then the generic net for each remaining `test_iter`. Each
net's state is its phase, then the net's own state, then the solver's
`train_state`/`test_state`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pipeline_lib.core import glog
from pipeline_lib.engine.net import Net
from pipeline_lib.engine.solvers import SolverParameterError
from pipeline_lib.engine.weights import copy_weights, read_weights
from pipeline_lib.proto import caffe_pb2

#: builds a Net from (param, phase, state override)
MakeNet = Callable[[caffe_pb2.NetParameter, int, "caffe_pb2.NetState | None"], Net]
#: a net file's NetParameter by path
ReadNet = Callable[[str], caffe_pb2.NetParameter]


def build(built: list[Net], sp: caffe_pb2.SolverParameter, *, xp, dtype, rng,
          net_files: Mapping[str, caffe_pb2.NetParameter] | None,
          log: glog.GlogLogger) -> None:
    """Append the train net, then the test nets, to `built` as each is made (so a failure
    can close those built); load the solver's `weights`; share the trained layers."""
    read = net_reader(net_files)

    def make(param: caffe_pb2.NetParameter, phase: int,
             override: caffe_pb2.NetState | None) -> Net:
        param = caffe_pb2.NetParameter.FromString(param.SerializeToString())
        state = merged_state(phase, param, override)
        param.state.CopyFrom(state)
        return Net(param, phase, xp=xp, dtype=dtype, rng=rng, stages=list(state.stage),
                   level=state.level)

    built.append(train_net(sp, make, read, log))
    add_test_nets(built, sp, make, read, log)
    load_weights(built, sp.weights, log)
    for test_net in built[1:]:
        test_net.share_trained_layers_with(built[0])


def net_reader(net_files: Mapping[str, caffe_pb2.NetParameter] | None) -> ReadNet:
    """Read net files from disk, except those already read (`net_files`, by path)."""
    from pipeline_lib.proto.prototxt import read_net

    known = net_files or {}
    return lambda path: known[path] if path in known else read_net(path)


def merged_state(phase: int, net_param: caffe_pb2.NetParameter,
                 override: caffe_pb2.NetState | None) -> caffe_pb2.NetState:
    """Caffe's precedence: the phase, then the net's own state, then the solver's."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(net_param.state)
    if override is not None:
        state.MergeFrom(override)
    return state


def train_net(sp: caffe_pb2.SolverParameter, make: MakeNet, read: ReadNet,
              log: glog.GlogLogger) -> Net:
    fields = ["net", "net_param", "train_net", "train_net_param"]
    given = [f for f in fields if sp.HasField(f)]
    if len(given) != 1:
        raise SolverParameterError(
            "the solver must name exactly one train net with one of "
            f"{', '.join(fields)}; it names {', '.join(given) or 'none'}")
    source = given[0]
    if source in ("net_param", "train_net_param"):
        log.info(f"Creating training net specified in {source}.")
        param = getattr(sp, source)
    else:
        path = getattr(sp, source)
        log.info(f"Creating training net from {source} file: {path}")
        param = read(path)
    override = sp.train_state if sp.HasField("train_state") else None
    return make(param, caffe_pb2.TRAIN, override)


def test_net_count(sp: caffe_pb2.SolverParameter) -> int:
    """How many test nets the solver asks for, checking test_iter/test_state against them."""
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
    return count


def add_test_nets(nets: list[Net], sp: caffe_pb2.SolverParameter, make: MakeNet,
                  read: ReadNet, log: glog.GlogLogger) -> None:
    """Append the test nets to `nets` one by one, so a failure can close those built."""
    count = test_net_count(sp)
    sources: list[tuple[str, Callable[[], caffe_pb2.NetParameter]]] = []
    for p in sp.test_net_param:
        sources.append(("test_net_param", lambda p=p: p))
    for path in sp.test_net:
        sources.append((f"test_net file: {path}", lambda path=path: read(path)))
    for _ in range(count - len(sources)):
        if sp.HasField("net_param"):
            sources.append(("net_param", lambda: sp.net_param))
        else:
            sources.append((f"net file: {sp.net}", lambda: read(sp.net)))
    for i, (label, get) in enumerate(sources):
        log.info(f"Creating test net (#{i}) specified by {label}")
        override = sp.test_state[i] if sp.test_state else None
        nets.append(make(get(), caffe_pb2.TEST, override))


def load_weights(built: list[Net], weights, log: glog.GlogLogger) -> None:
    """Copy the solver's `weights` (.caffemodel files, comma lists allowed) into the train
    net, by engine.weights' rules, then into the test nets, as Caffe does (their layers
    that the train net has are shared with it next)."""
    paths = [name for entry in weights for name in (n.strip() for n in entry.split(",")) if name]
    files = None  # each file read once, after the first "Finetuning from" lines
    for net in built:
        for path in paths:
            log.info(f"Finetuning from {path}")
        if files is None:
            files = read_weights(paths)
            copy_weights(net, files, log)
            continue
        for path, param in files:
            net.copy_trained_layers_from(param, source=path)
