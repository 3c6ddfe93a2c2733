"""Snapshots in Caffe's formats: `.caffemodel` (binary NetParameter) and `.solverstate`.

Files are named as Caffe names them, `<prefix>_iter_<N>.caffemodel` and
`<prefix>_iter_<N>.solverstate`. Each is written atomically (temporary file in
the same directory, fsync, rename), the caffemodel first, so a solverstate
exists only beside a complete caffemodel. The solverstate's `learned_net` is
the caffemodel's file *name* (relative), so the pair can be moved together
(`move_snapshot` renames the pair and keeps `learned_net` naming the caffemodel);
`resolve_learned_net` looks beside the solverstate first, then (as Caffe
does) relative to the working directory. Bytes depend only on the values:
no timestamps, host names or absolute paths, and deterministic serialization.

Besides Caffe's fields (`iter`, `learned_net`, `history`, `current_step`) our
solverstates carry `resume_state_json` (field 1000, which Caffe ignores): what
an exact resume needs and Caffe does not save (random generator state, data
positions).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.message import DecodeError

from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import check_blob, history_to_blob_proto
from pipeline_lib.proto.errors import BinaryProtoError

PathLike = str | os.PathLike


def snapshot_filename(prefix: str, iteration: int, extension: str) -> str:
    """Caffe's snapshot name: `<prefix>_iter_<N><extension>`."""
    return f"{prefix}_iter_{int(iteration)}{extension}"


def _serialize(message) -> bytes:
    return message.SerializeToString(deterministic=True)


def _parse(message, path: PathLike, what: str):
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BinaryProtoError(path, f"no such {what} file") from None
    except OSError as e:
        raise BinaryProtoError(path, f"cannot read {what}: {e.strerror or e}") from None
    if not data:
        raise BinaryProtoError(path, f"empty file, expected a {what}")
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise BinaryProtoError(
            path, f"not a valid {what} ({len(data)} bytes; truncated or corrupt?): {e}") from None
    return message


# -- .caffemodel -------------------------------------------------------------------

def save_net_param(param: caffe_pb2.NetParameter, path: PathLike) -> None:
    """Write a NetParameter (weights in Caffe layout) as a binary .caffemodel."""
    atomic_write_bytes(path, _serialize(param))


def save_caffemodel(net, path: PathLike, *, write_diff: bool = False) -> None:
    """Write `net`'s layers and learnable blobs as Caffe's binary .caffemodel."""
    save_net_param(net.to_proto(write_diff=write_diff), path)


def load_caffemodel(path: PathLike) -> caffe_pb2.NetParameter:
    """Read a binary .caffemodel; a clear error naming the file if it is not one."""
    param = _parse(caffe_pb2.NetParameter(), path, "caffemodel (binary NetParameter)")
    if not len(param.layer) and not len(param.layers):
        raise BinaryProtoError(path, "holds no layers; not a caffemodel?")
    for lp in list(param.layer) + list(param.layers):
        for j, bp in enumerate(lp.blobs):
            if (why := check_blob(bp)) is not None:
                raise BinaryProtoError(path, f"layer {lp.name!r} blob {j}: {why}")
    return param


# -- .solverstate ------------------------------------------------------------------

def make_solverstate(*, iteration: int, learned_net: str, history: Sequence,
                     current_step: int = 0, resume_state_json: str | None = None
                     ) -> caffe_pb2.SolverState:
    state = caffe_pb2.SolverState()
    state.iter = int(iteration)
    state.learned_net = learned_net
    for array in history:
        history_to_blob_proto(array, state.history.add())
    state.current_step = int(current_step)
    if resume_state_json is not None:
        state.resume_state_json = resume_state_json
    return state


def save_solverstate(path: PathLike, *, iteration: int, learned_net: str, history: Sequence,
                     current_step: int = 0, resume_state_json: str | None = None) -> None:
    """Write a .solverstate with Caffe's fields (plus our resume_state_json, if given)."""
    state = make_solverstate(iteration=iteration, learned_net=learned_net, history=history,
                             current_step=current_step, resume_state_json=resume_state_json)
    atomic_write_bytes(path, _serialize(state))


def load_solverstate(path: PathLike) -> caffe_pb2.SolverState:
    """Read a binary .solverstate (Caffe's or ours)."""
    if str(path).endswith(".h5"):
        raise BinaryProtoError(path, "HDF5 solverstates are not supported; snapshot with "
                                     "snapshot_format: BINARYPROTO")
    state = _parse(caffe_pb2.SolverState(), path, "solverstate (binary SolverState)")
    if not state.HasField("iter"):
        raise BinaryProtoError(path, "has no `iter` field; not a solverstate?")
    for j, bp in enumerate(state.history):
        if (why := check_blob(bp)) is not None:
            raise BinaryProtoError(path, f"history blob {j}: {why}")
    return state


def move_snapshot(model: PathLike, state: PathLike, stem: PathLike) -> tuple[Path, Path]:
    """Move a snapshot pair to `<stem>.caffemodel` and `<stem>.solverstate` (the caffemodel
    first); the moved solverstate's `learned_net` names the moved caffemodel."""
    stem = Path(stem)
    new_model = stem.parent / f"{stem.name}.caffemodel"
    new_state = stem.parent / f"{stem.name}.solverstate"
    os.replace(model, new_model)
    if Path(model).name == new_model.name:  # learned_net, as the solver wrote it, still fits
        os.replace(state, new_state)
    else:
        message = load_solverstate(state)
        message.learned_net = new_model.name
        atomic_write_bytes(new_state, _serialize(message))
        Path(state).unlink()
    return new_model, new_state


def resolve_learned_net(state_path: PathLike, learned_net: str) -> Path:
    """Where the solverstate's caffemodel is: absolute as given, else beside the
    solverstate, else relative to the working directory (Caffe's reading)."""
    candidate = Path(learned_net)
    if candidate.is_absolute():
        tried = [candidate]
    else:
        tried = [Path(state_path).parent / candidate, candidate]
        if tried[0] == tried[1]:
            del tried[1]
    for path in tried:
        if path.is_file():
            return path
    shown = " or ".join(str(p) for p in tried)
    raise BinaryProtoError(state_path, f"learned_net {learned_net!r} not found (looked for "
                                       f"{shown})")
