"""Net construction: rules, splits, in-place layers, sharing, loss weights, weight I/O."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib.engine.net import Net, NetError, filter_net, insert_splits
from pipeline_lib.proto import caffe_pb2


def net_param(text: str) -> caffe_pb2.NetParameter:
    return text_format.Parse(text, caffe_pb2.NetParameter())


MLP = """
name: "mlp"
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 4 dim: 3 } shape { dim: 4 } } }
layer { name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
        param { lr_mult: 1 } param { lr_mult: 2 }
        inner_product_param { num_output: 5 weight_filler { type: "gaussian" std: 0.5 }
                              bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
layer { name: "ip2" type: "InnerProduct" bottom: "h" top: "out"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "y" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "out" bottom: "y" top: "acc"
        include { phase: TEST } }
"""


def test_filter_by_phase_stage_and_level():
    param = net_param("""
      layer { name: "a" type: "Input" include { phase: TRAIN } }
      layer { name: "b" type: "Input" include { phase: TEST } }
      layer { name: "c" type: "Input" include { stage: "deploy" } }
      layer { name: "d" type: "Input" exclude { min_level: 2 } }
      layer { name: "e" type: "Input" include { not_stage: "deploy" phase: TEST } }
    """)
    names = lambda state: [lp.name for lp in filter_net(param, state).layer]  # noqa: E731
    assert names(caffe_pb2.NetState(phase=caffe_pb2.TRAIN)) == ["a", "d"]
    assert names(caffe_pb2.NetState(phase=caffe_pb2.TEST)) == ["b", "d", "e"]
    assert names(caffe_pb2.NetState(phase=caffe_pb2.TEST, stage=["deploy"], level=3)) == ["b", "c"]


def test_insert_splits_rewires_every_consumer():
    param = insert_splits(net_param("""
      layer { name: "src" type: "Input" top: "x" }
      layer { name: "a" type: "ReLU" bottom: "x" top: "a" }
      layer { name: "b" type: "ReLU" bottom: "x" top: "b" }
    """))
    assert [lp.type for lp in param.layer] == ["Input", "Split", "ReLU", "ReLU"]
    assert list(param.layer[1].top) == ["x_src_0_split_0", "x_src_0_split_1"]
    assert param.layer[2].bottom[0] == "x_src_0_split_0"
    assert param.layer[3].bottom[0] == "x_src_0_split_1"


def test_in_place_chain_needs_no_split():
    param = insert_splits(net_param("""
      layer { name: "src" type: "Input" top: "x" }
      layer { name: "r" type: "ReLU" bottom: "x" top: "x" }
      layer { name: "s" type: "Sigmoid" bottom: "x" top: "y" }
    """))
    assert "Split" not in [lp.type for lp in param.layer]


def make_mlp(phase=caffe_pb2.TRAIN, seed=0, dtype=np.float64):
    net = Net(net_param(MLP), phase, rng=np.random.default_rng(seed), dtype=dtype)
    rng = np.random.default_rng(1)
    net.blobs["x"].data[...] = rng.standard_normal((4, 3))
    net.blobs["y"].data[...] = [0, 1, 2, 1]
    return net

CONV_NET = """
name: "convnet"
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 24 dim: 3 dim: 10 dim: 10 } shape { dim: 24 } } }
layer { name: "conv1" type: "Convolution" bottom: "x" top: "c1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "c1" top: "p1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "p1" top: "c2"
        convolution_param { num_output: 6 kernel_size: 2 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "c2" top: "c2" }
layer { name: "pool2" type: "Pooling" bottom: "c2" top: "p2"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "p2" top: "out"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "y" top: "loss" }
"""


def test_structure_params_and_outputs():
    train = make_mlp()
    assert train.layer_names == ["in", "ip1", "relu", "ip2", "loss"]
    assert train.output_blob_names == ["loss"]
    assert train.loss_weights["loss"] == 1.0
    assert [b.shape for b in train.learnable_params] == [(5, 3), (5,), (3, 5), (3,)]
    assert train.params_lr == [1.0, 2.0, 1.0, 1.0]
    assert train.blobs["h"] is train.tops[2][0]  # in-place ReLU reuses its bottom blob
    test = make_mlp(caffe_pb2.TEST)
    assert test.output_blob_names == ["acc", "loss"]  # by name, as Caffe (loss is made first)
    assert test.loss_weights["acc"] == 0.0
    # the net's output blob "out" feeds both loss and accuracy in TEST, so a Split appears
    assert "Split" in [layer.type for layer in test.layers]


def test_whole_net_gradient_matches_finite_differences():
    net = make_mlp()
    net.clear_param_diffs()
    net.forward_backward()
    w = net.learnable_params[0]
    analytic = w.diff.copy()
    eps = 1e-6
    for idx in [(0, 0), (2, 1), (4, 2)]:
        orig = w.data[idx]
        w.data[idx] = orig + eps
        plus = net.forward()
        w.data[idx] = orig - eps
        minus = net.forward()
        w.data[idx] = orig
        assert analytic[idx] == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-8)


def test_split_sums_gradients_of_two_consumers():
    param = net_param("""
      layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
      layer { name: "ip" type: "InnerProduct" bottom: "x" top: "h"
              inner_product_param { num_output: 3 weight_filler { type: "gaussian" } } }
      layer { name: "l1" type: "EuclideanLoss" bottom: "h" bottom: "x" top: "l1" }
      layer { name: "l2" type: "EuclideanLoss" bottom: "h" bottom: "x" top: "l2"
              loss_weight: 3 }
    """)
    net = Net(param, rng=np.random.default_rng(0), dtype=np.float64)
    net.blobs["x"].data[...] = np.arange(6).reshape(2, 3)
    net.clear_param_diffs()
    net.forward_backward()
    w, x = net.learnable_params[0].data, net.blobs["x"].data
    h = x @ w.T + net.learnable_params[1].data
    expected = 4 * ((h - x) / 2).T @ x  # (1 + 3) * d(sum (h-x)^2 / 2N)/dW
    np.testing.assert_allclose(net.learnable_params[0].diff, expected, rtol=1e-10)


ACCUMULATE_NET = """
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 2 dim: 2 dim: 5 dim: 5 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "x" top: "c"
        convolution_param { num_output: 3 kernel_size: 3 weight_filler { type: "gaussian" }
                            bias_filler { type: "gaussian" } } }
layer { name: "ip" type: "InnerProduct" bottom: "c" top: "out"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" }
                              bias_filler { type: "gaussian" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "y" top: "loss" }
"""


def test_param_diffs_add_up_over_passes_and_clearing_starts_them_again():
    """Caffe's accumulation (iter_size, pycaffe's backward): a second pass without clearing
    adds its gradient; after clear_param_diffs a pass leaves exactly its own gradient,
    whether the layer wrote into the cleared diff (convolution, inner product) or read it."""
    net = Net(net_param(ACCUMULATE_NET), rng=np.random.default_rng(0), dtype=np.float64)
    net.blobs["x"].data[...] = np.random.default_rng(1).normal(size=(2, 2, 5, 5))
    net.blobs["y"].data[...] = [1, 3]
    net.forward_backward()
    once = [p.diff.copy() for p in net.learnable_params]
    assert all(np.abs(g).max() > 0 for g in once)
    net.forward_backward()
    for p, g in zip(net.learnable_params, once):
        np.testing.assert_array_equal(p.diff, 2 * g)
    net.clear_param_diffs()
    assert all(not p.diff.any() for p in net.learnable_params)  # read: the zeros appear
    net.forward_backward()
    net.forward_backward()
    net.clear_param_diffs()
    net.forward_backward()
    for p, g in zip(net.learnable_params, once):
        np.testing.assert_array_equal(p.diff, g)


def test_a_cleared_diff_is_written_not_added_to_only_by_whoever_takes_it():
    from pipeline_lib.core.blob import Blob

    blob = Blob((3,), dtype=np.float64)
    assert blob.overwrite_diff()  # never made: nothing to add to
    blob.diff[...] = 5.0
    assert not blob.overwrite_diff()  # holds a gradient: add to it
    blob.clear_diff()
    assert blob.overwrite_diff()  # cleared: the taker writes every value
    blob.diff[...] = 1.0
    np.testing.assert_array_equal(blob.diff, 1.0)
    blob.clear_diff()
    np.testing.assert_array_equal(blob.diff, 0.0)  # read first: zeros, then added to
    assert not blob.overwrite_diff()


def test_weight_sharing_by_param_name():
    param = net_param("""
      layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }
      layer { name: "a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" }
              inner_product_param { num_output: 3 bias_term: false
                                    weight_filler { type: "gaussian" } } }
      layer { name: "b" type: "InnerProduct" bottom: "a" top: "b" param { name: "w" }
              inner_product_param { num_output: 3 bias_term: false
                                    weight_filler { type: "gaussian" } } }
      layer { name: "loss" type: "EuclideanLoss" bottom: "b" bottom: "x" top: "loss" }
    """)
    net = Net(param, rng=np.random.default_rng(0), dtype=np.float64)
    assert net.layer("a").blobs[0] is net.layer("b").blobs[0]
    assert len(net.learnable_params) == 1


def test_train_and_test_nets_share_weights_and_round_trip_caffemodel():
    train, test = make_mlp(), make_mlp(caffe_pb2.TEST, seed=5)
    test.share_trained_layers_with(train)
    assert test.layer("ip1").blobs[0] is train.layer("ip1").blobs[0]
    proto = train.to_proto()
    assert [lp.name for lp in proto.layer if lp.blobs] == ["ip1", "ip2"]
    assert list(proto.layer[1].blobs[0].shape.dim) == [5, 3]
    fresh = make_mlp(seed=9)
    fresh.copy_trained_layers_from(caffe_pb2.NetParameter.FromString(proto.SerializeToString()))
    for a, b in zip(fresh.learnable_params, train.learnable_params):
        np.testing.assert_array_equal(a.data, b.data.astype(np.float32))


def test_copy_trained_layers_rejects_wrong_shape():
    proto = make_mlp().to_proto()
    proto.layer[1].blobs[0].shape.dim[0] = 7
    with pytest.raises(NetError, match=r"ip1.*\[7, 3\].*\[5, 3\]"):
        make_mlp().copy_trained_layers_from(proto)


def test_errors_name_layer_and_blob():
    with pytest.raises(NetError, match=r"'ip'.*bottom blob 'nope'"):
        Net(net_param('layer { name: "ip" type: "InnerProduct" bottom: "nope" top: "y" '
                      'inner_product_param { num_output: 2 } }'))
    with pytest.raises(NetError, match=r"unknown layer type 'Convolutoin'.*Convolution"):
        Net(net_param('layer { name: "c" type: "Convolutoin" }'))


@pytest.mark.parametrize("layer, message", [
    ('name: "r" type: "ReLU" bottom: "a" bottom: "b" top: "y"',
     r"^layer 'r' \(ReLU\): takes 1 bottom blob\(s\), got 2$"),
    ('name: "quiet" type: "Silence" bottom: "a" bottom: "b" top: "y"',
     r"^layer 'quiet' \(Silence\): takes 0 top blob\(s\), got 1$"),
    ('name: "sum" type: "Eltwise" bottom: "a" top: "y"',
     r"^layer 'sum' \(Eltwise\): takes 2\.\.any bottom blob\(s\), got 1$"),
    ('name: "acc" type: "Accuracy" bottom: "a" bottom: "b" top: "y" top: "z" top: "w"',
     r"^layer 'acc' \(Accuracy\): takes 1\.\.2 top blob\(s\), got 3$"),
])
def test_the_net_checks_every_layers_blob_counts(layer, message):
    text = ('layer { name: "in" type: "Input" top: "a" top: "b" '
            'input_param { shape { dim: 2 dim: 3 } } }\n'
            f"layer {{ {layer} }}")
    with pytest.raises(NetError, match=message):
        Net(net_param(text))


def test_conv_and_pool_blobs_are_channels_last_only_where_every_reader_accepts_it(monkeypatch):
    from pipeline_lib.core.blob import nhwc
    from pipeline_lib.engine import net as net_module

    text = CONV_NET + """
layer { name: "side" type: "Convolution" bottom: "p1" top: "s"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "cat" type: "Concat" bottom: "s" bottom: "s2" top: "cat" }
"""
    text = text.replace('top: "x" top: "y"', 'top: "x" top: "y" top: "s2"').replace(
        "shape { dim: 24 } }", "shape { dim: 24 } shape { dim: 24 dim: 2 dim: 5 dim: 5 } }")
    param = net_param(text)

    def run(plan):
        monkeypatch.setattr(net_module, "channels_last_blobs", plan)
        net = Net(param, rng=np.random.default_rng(3))
        rng = np.random.default_rng(4)
        net.blobs["x"].data[...] = rng.standard_normal(net.blobs["x"].shape)
        net.blobs["y"].data[...] = rng.integers(0, 5, 24)
        net.clear_param_diffs()
        loss = net.forward_backward()
        return net, loss

    planned, loss = run(net_module.channels_last_blobs)
    last = {name for name, b in planned.blobs.items() if b.channels_last}
    assert last == {"c1", "p1", "c2", "p2"}  # "s" feeds Concat, which does not accept it
    for name in last:
        blob = planned.blobs[name]
        assert nhwc(blob.data).flags.c_contiguous and nhwc(blob.diff).flags.c_contiguous
    assert planned.blobs["s"].data.flags.c_contiguous
    nchw, nchw_loss = run(lambda param: set())
    assert not any(b.channels_last for b in nchw.blobs.values())
    # the same arithmetic in either layout: equal to the bit
    assert loss == nchw_loss
    for a, b in zip(planned.learnable_params, nchw.learnable_params):
        np.testing.assert_array_equal(a.diff, b.diff)
    np.testing.assert_array_equal(planned.blobs["p2"].data, nchw.blobs["p2"].data)


def test_channels_last_blob_is_an_nchw_view_kept_across_reshapes():
    from pipeline_lib.core.blob import Blob, nhwc

    blob = Blob()
    blob.channels_last = True
    blob.reshape((2, 3, 4, 5))
    data = blob.data
    assert data.shape == (2, 3, 4, 5) and nhwc(data).flags.c_contiguous
    data[1, 2, 3, 4] = 7
    assert nhwc(data)[1, 3, 4, 2] == 7
    blob.reshape((2, 3, 4, 5))
    assert blob.data is data  # same shape and layout: nothing reallocated
    blob.reshape((6,))
    assert blob.data.shape == (6,) and blob.data.flags.c_contiguous  # only 4-D goes channels-last
    blob.channels_last = False
    blob.reshape((2, 3, 4, 5))
    assert blob.data.flags.c_contiguous


def test_forward_only_nets_hold_no_gradients():
    """Diffs are made on first use: a TEST net that only runs forward never allocates one."""
    net = Net(net_param(CONV_NET), caffe_pb2.TEST, rng=np.random.default_rng(3))
    net.forward()
    assert all(b._diff is None for b in net.blobs.values())
    blob = net.blobs["c1"]
    assert blob.diff.shape == blob.shape and not blob.diff.any()
    assert blob.diff.strides == blob.data.strides  # the same (channels-last) layout as data
