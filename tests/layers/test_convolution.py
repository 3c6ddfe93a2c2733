"""Convolution: forward and backward against the reference kernels (fixed cases and random
configurations), finite-difference gradients, Caffe's shape and parameter rules."""

import numpy as np
import pytest
from compute_util import backward, forward, host, make, to_blob
from gradient_check import check_gradient

import pipeline_lib.engine.layers.convolution as convolution
from pipeline_lib.core import lanes
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers import reference
from pipeline_lib.engine.layers.base import LayerSetupError

CASES = {
    # name: (prototxt conv_param body, bottom shape, pad, stride, dilation, group)
    "plain": ("num_output: 3 kernel_size: 3", (2, 2, 5, 6), (0, 0), (1, 1), (1, 1), 1),
    "pad_stride": ("num_output: 4 kernel_size: 3 pad: 1 stride: 2", (2, 3, 7, 6),
                   (1, 1), (2, 2), (1, 1), 1),
    "non_square": ("num_output: 2 kernel_h: 3 kernel_w: 2 pad_h: 2 pad_w: 0 "
                   "stride_h: 1 stride_w: 2", (1, 2, 5, 7), (2, 0), (1, 2), (1, 1), 1),
    "repeated_hw": ("num_output: 2 kernel_size: 2 kernel_size: 3 pad: 1 pad: 0 "
                    "stride: 2 stride: 1", (2, 1, 6, 6), (1, 0), (2, 1), (1, 1), 1),
    "dilation": ("num_output: 3 kernel_size: 3 dilation: 2 pad: 1", (2, 2, 7, 8),
                 (1, 1), (1, 1), (2, 2), 1),
    "group": ("num_output: 4 kernel_size: 3 group: 2 pad: 1", (2, 4, 5, 5),
              (1, 1), (1, 1), (1, 1), 2),
    "group_stride_dil": ("num_output: 6 kernel_size: 2 group: 3 stride: 2 dilation: 2",
                         (3, 6, 7, 7), (0, 0), (2, 2), (2, 2), 3),
    "one_by_one": ("num_output: 5 kernel_size: 1", (2, 3, 4, 3), (0, 0), (1, 1), (1, 1), 1),
}


@pytest.fixture(params=["rows", "taps"])
def layout(request, monkeypatch):
    """Run the test with each patch-matrix layout."""
    monkeypatch.setattr(convolution, "LAYOUT", request.param)
    return request.param


def conv_layer(body: str, xp=np, dtype=np.float64, bias=True, seed=0):
    fill = ('weight_filler { type: "gaussian" std: 1 } '
            'bias_filler { type: "uniform" min: -1 max: 1 }')
    extra = "" if bias else " bias_term: false"
    return make(f'name: "conv" type: "Convolution" bottom: "x" top: "y" '
                f'convolution_param {{ {body} {fill}{extra} }}', xp, dtype, seed)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_matches_the_reference(xp, case, dtype, layout, channels_last):
    body, shape, pad, stride, dil, group = CASES[case]
    x = np.random.default_rng(1).standard_normal(shape)
    layer = conv_layer(body, xp, dtype)
    (y,) = forward(layer, [to_blob(x, xp, dtype, channels_last)], channels_last=channels_last)
    w, b = host(layer.blobs[0].data), host(layer.blobs[1].data)
    want = reference.conv_forward(x.astype(dtype), w, b, stride, pad, dil, group)
    assert y.data.dtype == dtype and y.shape == want.shape
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(host(y.data), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_finite_differences(case, layout, channels_last):
    body, shape, *_ = CASES[case]
    x = np.random.default_rng(2).standard_normal(shape)
    check_gradient(conv_layer(body), [to_blob(x, channels_last=channels_last)],
                   channels_last=channels_last)


def test_gradient_without_bias():
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 5))
    layer = conv_layer("num_output: 3 kernel_size: 3 pad: 1", bias=False)
    check_gradient(layer, [to_blob(x)])
    assert len(layer.blobs) == 1


@pytest.mark.parametrize("case", ["group_stride_dil", "non_square"])
def test_backward_matches_the_reference(xp, case, layout, channels_last):
    body, shape, pad, stride, dil, group = CASES[case]
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    layer = conv_layer(body, xp)
    bottom = [to_blob(x, xp, channels_last=channels_last)]
    top = forward(layer, bottom, channels_last=channels_last)
    dy = rng.standard_normal(top[0].shape)
    backward(layer, top, bottom, [dy])
    w = host(layer.blobs[0].data)
    dx, dw, db = reference.conv_backward(x, w, dy, stride, pad, dil, group)
    np.testing.assert_allclose(host(bottom[0].diff), dx, atol=1e-10)
    np.testing.assert_allclose(host(layer.blobs[0].diff), dw, atol=1e-10)
    np.testing.assert_allclose(host(layer.blobs[1].diff), db, atol=1e-10)


RANDOM_CONFIGURATIONS = 60


def random_convolution(seed: int, gpu: bool) -> dict:
    """A random layer and input: every window parameter, groups, bias, several bottoms,
    dtype, patch layout, batch slicing and (on NumPy, as the net sets them) channels-last
    bottoms and tops."""
    rng = np.random.default_rng(seed)
    group = int(rng.choice([1, 1, 2, 3]))
    kernel, stride = rng.integers(1, 5, 2), rng.integers(1, 4, 2)
    pad, dil = rng.integers(0, 3, 2), rng.integers(1, 3, 2)
    extent = dil * (kernel - 1) + 1
    hw = np.maximum(extent - 2 * pad, 1) + rng.integers(0, 6, 2)
    c = group * int(rng.integers(1, 4))
    shape = (int(rng.integers(1, 4)), c, int(hw[0]), int(hw[1]))
    bias = bool(rng.random() < 0.7)
    body = (f"num_output: {group * int(rng.integers(1, 4))} group: {group} "
            f"kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} "
            f"stride_w: {stride[1]} pad_h: {pad[0]} pad_w: {pad[1]} "
            f"dilation: {dil[0]} dilation: {dil[1]}")
    # a budget below one image's patch matrix makes the layer take one image at a time
    budget = convolution.MAX_COLUMN_BYTES if rng.random() < 0.7 else 1
    bottom_last, top_last = (False, False) if gpu else tuple(bool(v) for v in rng.random(2) < 0.5)
    return dict(body=body, shape=shape, bias=bias, bottoms=1 + int(rng.random() < 0.2),
                dtype=np.float32 if rng.random() < 0.3 else np.float64,
                layout=rng.choice([None, "rows", "taps"]), budget=budget,
                bottom_last=bottom_last, top_last=top_last,
                window=dict(stride=tuple(stride), pad=tuple(pad), dilation=tuple(dil),
                            group=group))


@pytest.mark.parametrize("seed", range(RANDOM_CONFIGURATIONS))
def test_random_configurations_match_the_reference(xp, seed, monkeypatch):
    cfg = random_convolution(seed, gpu=xp is not np)
    monkeypatch.setattr(convolution, "LAYOUT", cfg["layout"])
    monkeypatch.setattr(convolution, "MAX_COLUMN_BYTES", cfg["budget"])
    dtype, window = cfg["dtype"], cfg["window"]
    layer = conv_layer(cfg["body"], xp, dtype, bias=cfg["bias"], seed=seed)
    rng = np.random.default_rng(1000 + seed)
    xs = [rng.standard_normal(cfg["shape"]).astype(dtype) for _ in range(cfg["bottoms"])]
    bottom = [to_blob(x, xp, dtype, cfg["bottom_last"]) for x in xs]
    top = forward(layer, bottom, cfg["bottoms"], channels_last=cfg["top_last"])
    w = host(layer.blobs[0].data)
    b = host(layer.blobs[1].data) if cfg["bias"] else None
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    for x, t in zip(xs, top):
        np.testing.assert_allclose(host(t.data), reference.conv_forward(x, w, b, **window), **tol)

    dys = [rng.standard_normal(t.shape) for t in top]
    for bl in bottom:
        bl.diff[...] = 9  # overwritten, not added to
    backward(layer, top, bottom, dys)
    dw_sum = np.zeros(w.shape)
    db_sum = np.zeros(w.shape[0])
    for x, bl, dy in zip(xs, bottom, dys):
        dx, dw, db = reference.conv_backward(x, w, dy, **window)
        np.testing.assert_allclose(host(bl.diff), dx, **tol)
        dw_sum += dw
        db_sum += db
    np.testing.assert_allclose(host(layer.blobs[0].diff), dw_sum, **tol)
    if cfg["bias"]:
        np.testing.assert_allclose(host(layer.blobs[1].diff), db_sum, **tol)


def test_param_diffs_accumulate_bottom_diff_is_overwritten():
    x = np.random.default_rng(5).standard_normal((2, 2, 4, 4))
    layer = conv_layer("num_output: 2 kernel_size: 3")
    bottom = [to_blob(x)]
    top = forward(layer, bottom)
    dy = np.ones(top[0].shape)
    backward(layer, top, bottom, [dy])
    once = [p.diff.copy() for p in layer.blobs] + [bottom[0].diff.copy()]
    layer.backward(top, [True], bottom)
    np.testing.assert_allclose(layer.blobs[0].diff, 2 * once[0])
    np.testing.assert_allclose(layer.blobs[1].diff, 2 * once[1])
    np.testing.assert_allclose(bottom[0].diff, once[2])


def test_no_input_gradient_when_not_propagated():
    layer = conv_layer("num_output: 2 kernel_size: 3")
    bottom = [to_blob(np.ones((1, 1, 4, 4)))]
    top = forward(layer, bottom)
    bottom[0].diff[...] = 7
    top[0].diff[...] = 1
    layer.backward(top, [False], bottom)
    assert (bottom[0].diff == 7).all()
    assert np.abs(layer.blobs[0].diff).sum() > 0


def test_sliced_batch_matches_whole_batch(monkeypatch, layout, channels_last):
    # tiny column budget: one image (and then a smaller remainder) at a time
    body = "num_output: 4 kernel_size: 3 pad: 1 group: 2"
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 4, 6, 6))
    dy = rng.standard_normal((5, 4, 6, 6))
    results = []
    for budget in (convolution.MAX_COLUMN_BYTES, 2 * 6 * 6 * 36 * 8):
        monkeypatch.setattr(convolution, "MAX_COLUMN_BYTES", budget)
        layer = conv_layer(body)
        bottom = [to_blob(x, channels_last=channels_last)]
        top = forward(layer, bottom, channels_last=channels_last)
        backward(layer, top, bottom, [dy])
        results.append((layer.chunk, top[0].data.copy(), bottom[0].diff.copy(),
                        layer.blobs[0].diff.copy(), layer.blobs[1].diff.copy()))
    (c0, *whole), (c1, *sliced) = results
    assert c0 == 5 and c1 == 2
    for a, b in zip(whole, sliced):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_two_bottoms_share_weights(layout):
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    layer = make('name: "c" type: "Convolution" bottom: "a" bottom: "b" top: "p" top: "q" '
                 'convolution_param { num_output: 3 kernel_size: 3 '
                 'weight_filler { type: "gaussian" } }')
    bottom = [to_blob(x1), to_blob(x2)]
    top = forward(layer, bottom, num_top=2)
    w = layer.blobs[0].data
    np.testing.assert_allclose(top[0].data, reference.conv_forward(x1, w), atol=1e-12)
    np.testing.assert_allclose(top[1].data, reference.conv_forward(x2, w), atol=1e-12)
    check_gradient(layer, bottom)


@pytest.mark.parametrize("body, hw, out", [
    ("kernel_size: 11 stride: 4", 227, 55),           # CaffeNet conv1
    ("kernel_size: 5 pad: 2 group: 2", 27, 27),       # conv2
    ("kernel_size: 3 pad: 1", 13, 13),                # conv3..5
    ("kernel_size: 5", 28, 24),                       # LeNet conv1
    ("kernel_size: 3 stride: 2", 8, 3),               # (8 - 3) / 2 rounds down
    ("kernel_size: 3 dilation: 3 pad: 1", 10, 6),     # extent 7
])
def test_output_size_rounds_down(body, hw, out):
    layer = make(f'name: "c" type: "Convolution" convolution_param {{ num_output: 2 {body} }}')
    top = [Blob(())]
    bottom = [Blob((1, 4, hw, hw))]
    layer.setup(bottom, top)
    layer.reshape(bottom, top)
    assert top[0].shape == (1, 2, out, out)


def test_blob_shapes_and_fillers_in_caffe_layout():
    layer = make('name: "c" type: "Convolution" convolution_param { num_output: 6 '
                 'kernel_h: 3 kernel_w: 2 group: 2 weight_filler { type: "xavier" } '
                 'bias_filler { type: "constant" value: 0.5 } }', dtype=np.float32)
    layer.setup([Blob((2, 4, 5, 5))], [Blob(())])
    w, b = layer.blobs
    assert w.shape == (6, 2, 3, 2) and b.shape == (6,)
    assert w.data.dtype == np.float32
    bound = np.sqrt(3 / (2 * 3 * 2))  # fan_in = count / num_output
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.5 * bound
    assert (b.data == 0.5).all()


def test_same_seed_same_weights():
    a = conv_layer("num_output: 2 kernel_size: 3", seed=11)
    b = conv_layer("num_output: 2 kernel_size: 3", seed=11)
    for layer in (a, b):
        layer.setup([Blob((1, 2, 5, 5))], [Blob(())])
    np.testing.assert_array_equal(a.blobs[0].data, b.blobs[0].data)


def test_existing_blobs_are_kept_and_checked():
    layer = conv_layer("num_output: 2 kernel_size: 3")
    layer.blobs = [Blob((2, 1, 3, 3)), Blob((2,))]
    layer.blobs[0].data[...] = 3
    layer.setup([Blob((1, 1, 5, 5))], [Blob(())])
    assert (layer.blobs[0].data == 3).all()
    bad = conv_layer("num_output: 2 kernel_size: 3")
    bad.blobs = [Blob((2, 1, 5, 5)), Blob((2,))]
    with pytest.raises(LayerSetupError, match="shapes"):
        bad.setup([Blob((1, 1, 5, 5))], [Blob(())])


def test_reshape_to_a_new_batch_and_size(layout):
    rng = np.random.default_rng(8)
    layer = conv_layer("num_output: 2 kernel_size: 3 pad: 1")
    top = forward(layer, [to_blob(rng.standard_normal((2, 1, 5, 5)))])
    x = rng.standard_normal((3, 1, 7, 4))
    bottom = [to_blob(x)]
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    w, b = layer.blobs[0].data, layer.blobs[1].data
    want = reference.conv_forward(x, w, b, pad=(1, 1))
    np.testing.assert_allclose(top[0].data, want, atol=1e-12)


@pytest.mark.parametrize("body, message", [
    ("num_output: 2 kernel_size: 3 axis: 2", "axis"),
    ("num_output: 2 kernel_size: 3 kernel_h: 3 kernel_w: 3", "not both"),
    ("num_output: 2 kernel_h: 3", "together"),
    ("num_output: 2", "kernel_size"),
    ("num_output: 3 kernel_size: 3 group: 2", "group"),
    ("num_output: 2 kernel_size: 3 stride: 0", "stride"),
    ("kernel_size: 3", "num_output"),
    ("num_output: 2 kernel_size: 1 kernel_size: 2 kernel_size: 3", "once per spatial axis"),
])
def test_bad_parameters_are_errors(body, message):
    layer = make(f'name: "bad" type: "Convolution" convolution_param {{ {body} }}')
    with pytest.raises(LayerSetupError, match=message):
        layer.setup([Blob((1, 4, 5, 5))], [Blob(())])


def test_input_of_wrong_channels_is_an_error():
    layer = conv_layer("num_output: 2 kernel_size: 3")
    layer.setup([Blob((1, 2, 5, 5))], [Blob(())])
    with pytest.raises(LayerSetupError, match="does not fit"):
        layer.reshape([Blob((1, 3, 5, 5))], [Blob(())])
    with pytest.raises(LayerSetupError, match="does not fit"):
        layer.reshape([Blob((1, 2, 2, 2))], [Blob(())])


def test_layout_is_picked_by_run_length():
    # LeNet: conv1 (1 channel, 24 wide) copies output rows; conv2 (20 channels) patch rows
    conv1 = conv_layer("num_output: 20 kernel_size: 5")
    forward(conv1, [Blob((2, 1, 28, 28))])
    conv2 = conv_layer("num_output: 50 kernel_size: 5")
    forward(conv2, [Blob((2, 20, 12, 12))])
    assert (conv1.layout, conv2.layout) == ("taps", "rows")


def test_test_phase_keeps_a_smaller_patch_matrix(monkeypatch):
    """Forward-only (TEST) layers slice the batch to a smaller budget; same outputs."""
    from pipeline_lib.proto import caffe_pb2

    monkeypatch.setattr(convolution, "MAX_COLUMN_BYTES_TEST", 3 * 6 * 6 * 36 * 8)
    monkeypatch.setattr(lanes, "GEMM_MIN_WORK", 1 << 10)  # slices of an image are worth it
    x = np.random.default_rng(8).standard_normal((7, 4, 6, 6))
    outputs = []
    for phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        layer = conv_layer("num_output: 3 kernel_size: 3 pad: 1")
        layer.phase = phase
        (y,) = forward(layer, [to_blob(x)])
        outputs.append((layer.chunk, y.data.copy()))
    (train_chunk, train_y), (test_chunk, test_y) = outputs
    assert train_chunk == 7 and test_chunk == 3
    np.testing.assert_array_equal(train_y, test_y)
