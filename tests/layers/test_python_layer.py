"""The Python layer: the user's module and class from python_param, pycaffe's method names
and blob face, param_str, learnable blobs, finite differences through the user's code,
a net trained with a Python loss exactly as with the built-in one, and the errors."""

import sys
from pathlib import Path

import numpy as np
import pytest
from basic_layer_util import blob, make_layer, run
from google.protobuf import text_format
from gradient_check import check_gradient

from pipeline_lib.api import Net, load_net
from pipeline_lib.caffe import get_solver
from pipeline_lib.engine.layers.python_layer import PythonLayerError
from pipeline_lib.engine.training.job import TrainingJob
from pipeline_lib.engine.training.solver import Solver
from pipeline_lib.proto import caffe_pb2

# Caffe's pyloss example idea: a Euclidean loss written against pycaffe's blob face.
USER_CODE = '''
import numpy as np
from pipeline_lib.engine.layers.python_layer import PythonLayerBase


class EuclideanLoss(PythonLayerBase):
    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("two bottoms please")
        self.factor = float(self.param_str or 1)

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("inputs must have the same count")
        self.delta = np.zeros_like(bottom[0].data, dtype=np.float64)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.delta[...] = bottom[0].data - bottom[1].data.reshape(bottom[0].shape)
        top[0].data[...] = self.factor * np.sum(self.delta ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if propagate_down[i]:
                sign = 1 if i == 0 else -1
                g = sign * self.factor * top[0].diff[0] * self.delta / bottom[i].num
                bottom[i].diff[...] = g.reshape(bottom[i].shape)


class Scale:
    """Not derived from the base, made without arguments: y = w * x with a learnable w."""

    def setup(self, bottom, top):
        self.blobs.add_blob(*bottom[0].shape[1:])
        self.blobs[0].data[...] = 0.5
        self.seen = (bottom[0].num, bottom[0].channels, bottom[0].height, bottom[0].width)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = self.blobs[0].data * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        self.blobs[0].diff[...] += (top[0].diff * bottom[0].data).sum(axis=0)
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.blobs[0].data


class Broken:
    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        return 1 / 0
'''

_counter = iter(range(10**6))


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A fresh module name holding USER_CODE, importable from tmp_path."""
    name = f"user_layers_{next(_counter)}"
    (tmp_path / f"{name}.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def text(module, cls, param_str="", bottoms=("a", "b"), tops=("loss",)):
    t = 'name: "py" type: "Python" ' + " ".join(f'bottom: "{b}"' for b in bottoms)
    t += " " + " ".join(f'top: "{n}"' for n in tops)
    return t + f' python_param {{ module: "{module}" layer: "{cls}" param_str: "{param_str}" }}'


def test_forward_and_param_str(user_module):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    layer = make_layer(text(user_module, "EuclideanLoss", "3"))
    (loss,) = run(layer, [blob(a), blob(b)])
    assert loss.shape == (1,)
    assert float(loss.data[0]) == pytest.approx(3 * ((a - b) ** 2).sum() / 4 / 2, rel=1e-12)
    assert layer.user.param_str == "3" and layer.user.phase == caffe_pb2.TRAIN


def test_gradient_through_the_users_backward(user_module):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 4))
    check_gradient(make_layer(text(user_module, "EuclideanLoss", "0.5")), [blob(a), blob(b)])


def test_learnable_blob_legacy_dims_and_its_gradient(user_module):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 2))
    layer = make_layer(text(user_module, "Scale", bottoms=("x",), tops=("y",)))
    (y,) = run(layer, [blob(x)])
    assert layer.user.seen == (2, 3, 2, 1)
    assert [b.shape for b in layer.blobs] == [(3, 2)]
    np.testing.assert_allclose(y.data, 0.5 * x)
    layer.blobs[0].data[...] = rng.standard_normal((3, 2))
    check_gradient(layer, [blob(x)])


class NotNumpy:
    """NumPy under another name: the layer takes it for a device array module."""

    def __getattr__(self, name):
        return getattr(np, name)


def test_host_copies_are_synced_back(user_module):
    """The path a GPU net takes (copies around each call), run on NumPy arrays."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3))
    layer = make_layer(text(user_module, "Scale", bottoms=("x",), tops=("y",)))
    layer.xp = NotNumpy()
    (y,) = run(layer, [blob(x)])
    np.testing.assert_allclose(y.data, 0.5 * x)
    y.diff[...] = 1
    bottom = [blob(x)]
    layer.backward([y], [True], bottom)
    np.testing.assert_allclose(bottom[0].diff, 0.5 * np.ones_like(x))
    np.testing.assert_allclose(layer.blobs[0].diff, x.sum(axis=0))


NET = """
name: "regression"
layer { name: "data" type: "MemoryData" top: "data" top: "target"
        memory_data_param { batch_size: 8 channels: 3 height: 1 width: 1 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 0.5 } } }
"""
PY_LOSS = """layer { name: "loss" type: "Python" bottom: "ip" bottom: "target" top: "loss"
        loss_weight: 1 python_param { module: "%s" layer: "EuclideanLoss" } }"""
BUILT_IN_LOSS = """layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target"
        top: "loss" }"""


def train(tmp_path, net_text, iters=20):
    sp = text_format.Parse('base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" display: 0 '
                           f'max_iter: {iters} random_seed: 5', caffe_pb2.SolverParameter())
    sp.snapshot_prefix = str(tmp_path / "reg")
    net = text_format.Parse(net_text, caffe_pb2.NetParameter())
    solver = Solver(sp, net_param=net)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3, 1, 1)).astype(np.float32)
    y = (x.reshape(32, 3) @ np.array([1.0, -2.0, 0.5]) + 0.3).astype(np.float32)
    solver.net.layer("data").set_arrays(x, y)
    first = solver.net.forward()
    solver.step(iters)
    return first, solver.net.forward(), [p.data.copy() for p in solver.net.learnable_params]


def test_a_net_trains_with_a_python_loss_as_with_the_built_in_one(user_module, tmp_path):
    first, last, weights = train(tmp_path, NET + PY_LOSS % user_module)
    ref_first, ref_last, ref_weights = train(tmp_path, NET + BUILT_IN_LOSS)
    assert last < 0.05 * first
    assert first == pytest.approx(ref_first, rel=1e-6)
    assert last == pytest.approx(ref_last, rel=1e-4, abs=1e-6)
    for w, r in zip(weights, ref_weights):
        np.testing.assert_allclose(w, r, rtol=1e-5, atol=1e-6)


def test_module_found_in_the_working_directory(tmp_path, monkeypatch):
    name = f"cwd_layers_{next(_counter)}"
    (tmp_path / f"{name}.py").write_text(USER_CODE)
    monkeypatch.chdir(tmp_path)
    layer = make_layer(text(name, "EuclideanLoss"))
    (loss,) = run(layer, [blob(np.ones((2, 1))), blob(np.zeros((2, 1)))])
    assert float(loss.data[0]) == pytest.approx(0.5)


def test_missing_module_is_one_line_naming_layer_module_and_class():
    with pytest.raises(ValueError, match=r"layer 'py' \(Python\): python_param.module "
                                         r"'no_such_mod_xyz' cannot be imported.*'Cls'") as e:
        run(make_layer(text("no_such_mod_xyz", "Cls")), [blob(np.ones(1)), blob(np.ones(1))])
    assert "\n" not in str(e.value)


def test_missing_class_is_named(user_module):
    with pytest.raises(ValueError, match=rf"'py'.*module '{user_module}' \(.*\) has no class "
                                         r"'Nope'"):
        run(make_layer(text(user_module, "Nope")), [blob(np.ones(1)), blob(np.ones(1))])


def test_error_in_user_code_names_layer_class_and_method(user_module):
    with pytest.raises(PythonLayerError, match=rf"'py' \(Python, {user_module}.Broken\)."
                                               r"forward raised ZeroDivisionError"):
        run(make_layer(text(user_module, "Broken", bottoms=())), [])


# -- a module beside the net file ---------------------------------------------------------

BESIDE_NET = """name: "beside"
layer { name: "data" type: "DummyData" top: "x" top: "t"
        dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 1 }
                           data_filler { type: "gaussian" } data_filler { type: "constant" } } }
layer { name: "ip" type: "InnerProduct" bottom: "x" top: "ip"
        inner_product_param { num_output: 1 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "Python" bottom: "ip" bottom: "t" top: "loss" loss_weight: 1
        python_param { module: "%s" layer: "EuclideanLoss" } }
"""


@pytest.fixture
def beside(tmp_path, monkeypatch):
    """../models/reg/net.prototxt, its Python loss's module in the same folder, run from
    run/: neither folder is on sys.path. Returns (net path as given, module, folder)."""
    name = f"beside_layers_{next(_counter)}"
    folder = tmp_path / "models" / "reg"
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text(USER_CODE)
    (folder / "net.prototxt").write_text(BESIDE_NET % name)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    return "../models/reg/net.prototxt", name, folder


@pytest.mark.parametrize("build", ["api.Net", "load_net (pcaffe test, time)"])
def test_a_module_beside_the_net_file_is_found(beside, build):
    path, name, folder = beside
    before = list(sys.path)
    if build == "api.Net":
        net = Net(path, phase="TRAIN").core
    else:
        net = load_net(path, None, caffe_pb2.TRAIN)
    assert sys.path == before  # the net's folder was on it only while importing
    assert Path(sys.modules[name].__file__).parent == folder
    assert np.isfinite(net.forward())
    net.close()


@pytest.mark.parametrize("trainer", ["pcaffe train (TrainingJob)", "caffe.get_solver"])
def test_training_finds_a_module_beside_its_nets(beside, trainer):
    path, _, folder = beside
    (folder / "solver.prototxt").write_text(
        f'net: "{path}" base_lr: 0.01 lr_policy: "fixed" max_iter: 2 display: 0 '
        'snapshot_prefix: "reg" solver_mode: CPU')
    if trainer == "caffe.get_solver":
        with get_solver("../models/reg/solver.prototxt") as solver:
            solver.step(2)
            assert solver.iter == 2
        return
    result = TrainingJob.create("../models/reg/solver.prototxt",
                                output_stem="results/reg_iter_2").run()
    assert result.caffemodel.is_file()


def test_the_net_files_folder_is_searched_only_for_that_net(beside):
    path, _, folder = beside
    Net(path, phase="TRAIN").close()
    (folder / "later_layers.py").write_text(USER_CODE)
    param = text_format.Parse(BESIDE_NET % "later_layers", caffe_pb2.NetParameter())
    with pytest.raises(ValueError, match="no module named 'later_layers' on sys.path or in the "
                                         "working directory"):
        Net(param, phase="TRAIN")


def test_a_module_found_nowhere_names_every_folder_searched(beside):
    path, _, folder = beside
    (folder / "net.prototxt").write_text(BESIDE_NET % "nowhere_xyz")
    with pytest.raises(ValueError) as e:
        Net(path, phase="TRAIN")
    assert str(e.value) == (
        "layer 'loss' (Python): python_param.module 'nowhere_xyz' cannot be imported: no "
        f"module named 'nowhere_xyz' on sys.path, in the working directory "
        f"{str(folder.parents[1] / 'run')!r} or in the net file's folder {str(folder)!r} "
        "(class 'EuclideanLoss')")
