"""pycaffe's solver faces: the class the file's type picks, step/snapshot/restore/solve
over the engine's Solver (an exact resume), and the shared Net class."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib import caffe

TINY = """
name: "tiny"
layer { name: "data" type: "DummyData" top: "x" top: "y"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                           data_filler { type: "gaussian" } data_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "y" top: "loss" }
"""


@pytest.fixture
def solver_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.prototxt").write_text(TINY)
    path = tmp_path / "tiny_solver.prototxt"
    path.write_text('net: "tiny.prototxt"\nbase_lr: 0.1\nmomentum: 0.9\nlr_policy: "fixed"\n'
                    "max_iter: 6\ndisplay: 0\nrandom_seed: 3\n")
    return path


def weights(solver) -> np.ndarray:
    return np.concatenate([b.data.ravel() for b in solver.net.params["ip"]])


def test_step_snapshot_restore_and_solve(solver_file, tmp_path):
    with caffe.get_solver(str(solver_file)) as solver:
        assert type(solver) is caffe.SGDSolver and isinstance(solver.net, caffe.Net)
        solver.step(2)
        model, state = solver.snapshot()
        # no snapshot_prefix: beside the solver file, under its name (as Caffe)
        assert model == str(tmp_path / "tiny_solver_iter_2.caffemodel")
        assert (tmp_path / "tiny_solver_iter_2.solverstate").is_file()
        solver.step(2)
        at4 = weights(solver)
        solver.solve()  # on to max_iter, then the final snapshot
        assert solver.iter == 6 and (tmp_path / "tiny_solver_iter_6.caffemodel").is_file()
        at6 = weights(solver)
    with caffe.SGDSolver(str(solver_file)) as again:
        again.restore(state)
        assert again.iter == 2
        again.step(2)
        np.testing.assert_array_equal(weights(again), at4)
    with caffe.SGDSolver(str(solver_file)) as resumed:
        resumed.solve(resume=state)
        assert resumed.iter == 6
        np.testing.assert_array_equal(weights(resumed), at6)
    trained = caffe.Net("tiny.prototxt", "tiny_solver_iter_6.caffemodel", caffe.TRAIN)
    np.testing.assert_array_equal(np.concatenate([b.data.ravel() for b in trained.params["ip"]]),
                                  at6)


def test_the_solver_class_decides_the_rule(solver_file):
    text = solver_file.read_text()
    solver_file.write_text(text + 'type: "Adam"\n')
    with caffe.get_solver(str(solver_file)) as adam:
        assert type(adam) is caffe.AdamSolver and adam.type == "Adam"
    with caffe.SGDSolver(str(solver_file)) as sgd:  # the class wins, as in pycaffe
        assert sgd.type == "SGD"
    solver_file.write_text(text + "solver_type: NESTEROV\n")
    with caffe.get_solver(str(solver_file)) as nesterov:
        assert type(nesterov) is caffe.NesterovSolver
    plain = text.replace("momentum: 0.9\n", "")
    for cls, rule, extra in ((caffe.AdaGradSolver, "AdaGrad", ""),
                             (caffe.RMSPropSolver, "RMSProp", ""),
                             (caffe.AdaDeltaSolver, "AdaDelta", "momentum: 0.95\n")):
        solver_file.write_text(plain + extra)
        with cls(str(solver_file)) as solver:
            assert solver.type == rule
            solver.step(1)
            assert solver.iter == 1


def test_forward_on_the_solvers_net_moves_its_data(solver_file):
    with caffe.get_solver(str(solver_file)) as solver:
        first = solver.net.forward()["loss"]
        x1 = solver.net.blobs["x"].data.copy()
        second = solver.net.forward()["loss"]
        assert not np.array_equal(x1, solver.net.blobs["x"].data)  # a new batch drawn
        assert first.shape == () and second.shape == ()
        assert solver.net.blobs["loss"].data == second
