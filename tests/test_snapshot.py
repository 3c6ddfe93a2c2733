"""Caffe's snapshot files: byte-exact writing, clear errors when reading, learned_net paths."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from conftest import DATA

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import blob_proto_to_array
from pipeline_lib.proto.errors import BinaryProtoError
from pipeline_lib.proto.snapshot import (
    load_caffemodel,
    load_solverstate,
    make_solverstate,
    resolve_learned_net,
    save_net_param,
    save_solverstate,
    snapshot_filename,
)

GOLDEN = DATA / "golden"
MODEL = GOLDEN / "lenet_iter_10000.caffemodel"
STATE = GOLDEN / "lenet_iter_10000.solverstate"


def test_snapshot_names_are_caffes():
    assert snapshot_filename("results/lenet", 5000, ".caffemodel") == \
        "results/lenet_iter_5000.caffemodel"


def test_golden_solverstate_loads_with_eight_history_blobs():
    state = load_solverstate(STATE)
    assert state.iter == 10000 and state.current_step == 0
    assert state.learned_net == "lenet_iter_10000.caffemodel"
    shapes = [list(h.shape.dim) for h in state.history]
    assert shapes == [[20, 1, 5, 5], [20], [50, 20, 5, 5], [50], [500, 800], [500], [10, 500],
                      [10]]
    assert not state.resume_state_json


def test_solverstate_written_from_caffes_values_is_byte_identical_to_caffes():
    golden = load_solverstate(STATE)
    history = [blob_proto_to_array(bp) for bp in golden.history]
    ours = make_solverstate(iteration=10000, learned_net="lenet_iter_10000.caffemodel",
                            history=history, current_step=0)
    assert ours.SerializeToString(deterministic=True) == STATE.read_bytes()


def test_caffemodel_round_trip_is_byte_identical(tmp_path):
    out = tmp_path / "copy.caffemodel"
    save_net_param(load_caffemodel(MODEL), out)
    assert out.read_bytes() == MODEL.read_bytes()


def test_solverstate_is_plain_caffe_with_our_extra_field(tmp_path):
    path = tmp_path / "m_iter_3.solverstate"
    history = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
    save_solverstate(path, iteration=3, learned_net="m_iter_3.caffemodel", history=history,
                     current_step=1, resume_state_json='{"a":1}')
    state = caffe_pb2.SolverState.FromString(path.read_bytes())
    assert state.iter == 3 and state.learned_net == "m_iter_3.caffemodel"
    assert state.current_step == 1 and state.resume_state_json == '{"a":1}'
    assert [list(h.shape.dim) for h in state.history] == [[2, 3], [4]]
    assert list(state.history[0].data) == list(range(6))
    first = path.read_bytes()
    save_solverstate(path, iteration=3, learned_net="m_iter_3.caffemodel", history=history,
                     current_step=1, resume_state_json='{"a":1}')
    assert path.read_bytes() == first  # same values -> same bytes
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_float64_history_keeps_its_precision(tmp_path):
    path = tmp_path / "d.solverstate"
    value = np.array([1 / 3], dtype=np.float64)
    save_solverstate(path, iteration=0, learned_net="d.caffemodel", history=[value])
    assert blob_proto_to_array(load_solverstate(path).history[0])[0] == value[0]


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_caffemodel_error_names_the_file(tmp_path, cut):
    data = MODEL.read_bytes()
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(BinaryProtoError, match=r"bad\.caffemodel: .*(truncated|needs)"):
        load_caffemodel(bad)


def test_empty_and_missing_files_are_named(tmp_path):
    empty = tmp_path / "empty.solverstate"
    empty.write_bytes(b"")
    with pytest.raises(BinaryProtoError, match="empty.solverstate: empty file"):
        load_solverstate(empty)
    with pytest.raises(BinaryProtoError, match="nope.caffemodel: no such"):
        load_caffemodel(tmp_path / "nope.caffemodel")


def test_a_caffemodel_is_not_a_solverstate(tmp_path):
    with pytest.raises(BinaryProtoError, match="not"):
        load_solverstate(MODEL)


def test_learned_net_is_found_beside_the_solverstate_then_in_the_working_dir(tmp_path,
                                                                            monkeypatch):
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(STATE, moved)
    shutil.copy(MODEL, moved)
    assert resolve_learned_net(moved / STATE.name, "lenet_iter_10000.caffemodel") == \
        moved / MODEL.name
    assert resolve_learned_net(moved / STATE.name, str(MODEL.resolve())) == MODEL.resolve()
    monkeypatch.chdir(GOLDEN.parent)  # Caffe's reading: relative to the working directory
    assert resolve_learned_net(moved / STATE.name, "golden/" + MODEL.name) == \
        type(MODEL)("golden") / MODEL.name
    with pytest.raises(BinaryProtoError, match="learned_net 'gone.caffemodel' not found"):
        resolve_learned_net(moved / STATE.name, "gone.caffemodel")
    assert os.path.isfile(moved / MODEL.name)
