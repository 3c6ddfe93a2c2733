"""LSTM: Caffe's learnable blobs (order and shapes), forward against a per-stream loop of the
formulas, the cont = 0 reset, state carried between forwards and exposed (h_0, c_0 in,
h_T, c_T out), a .caffemodel round trip through the net, and finite-difference gradients
(with a static input and mid-sequence resets)."""

import numpy as np
from basic_layer_util import blob, host, make_layer, run
from google.protobuf import text_format
from gradient_check import check_gradient
from recurrent_util import sequences, sigmoid, text

from pipeline_lib.engine.net import Net
from pipeline_lib.proto import caffe_pb2


def naive(layer, x, cont, xs=None, h0=None, c0=None):
    """Caffe's unrolled LSTM step by step, one stream at a time (gates i, f, o, g)."""
    b = [np.asarray(p.data) for p in layer.blobs]
    w_xc, b_c, w_hc = b[0], b[1], b[-1]
    steps, streams = cont.shape
    d = w_hc.shape[1]
    h = np.zeros((streams, d)) if h0 is None else h0.reshape(streams, d).copy()
    c = np.zeros((streams, d)) if c0 is None else c0.reshape(streams, d).copy()
    out = np.zeros((steps, streams, d))
    for t in range(steps):
        for n in range(streams):
            g = w_hc @ (cont[t, n] * h[n]) + w_xc @ x[t, n].ravel() + b_c
            if xs is not None:
                g += b[2] @ xs[n].ravel()
            i, f, o = sigmoid(g[:d]), cont[t, n] * sigmoid(g[d:2 * d]), sigmoid(g[2 * d:3 * d])
            c[n] = f * c[n] + i * np.tanh(g[3 * d:])
            h[n] = o * np.tanh(c[n])
            out[t, n] = h[n]
    return out, h, c


def test_blobs_in_caffes_order_and_shapes():
    x, cont, xs = sequences()
    layer = make_layer(text("LSTM", hidden=3))
    run(layer, [blob(x), blob(cont)])
    assert [b.shape for b in layer.blobs] == [(12, 4), (12,), (12, 3)]
    layer = make_layer(text("LSTM", hidden=3, static=True))
    run(layer, [blob(x), blob(cont), blob(xs)])
    assert [b.shape for b in layer.blobs] == [(12, 4), (12,), (12, 3), (12, 3)]


def test_forward_matches_the_formulas_with_static_input_and_a_reset(xp):
    x, cont, xs = sequences(resets=[(2, 1)])
    layer = make_layer(text("LSTM", static=True), xp)
    (y,) = run(layer, [blob(x, xp), blob(cont, xp), blob(xs, xp)])
    assert y.shape == (4, 2, 3)
    np.testing.assert_allclose(host(y.data), naive(layer, x, cont, xs)[0], rtol=1e-12)


def test_cont_zero_starts_a_new_sequence():
    x, cont, _ = sequences(steps=5, resets=[(3, 0), (3, 1)])
    layer = make_layer(text("LSTM"))
    (y,) = run(layer, [blob(x), blob(cont)])
    (tail,) = run(layer, [blob(x[3:]), blob(cont[3:])])
    np.testing.assert_allclose(y.data[3:], tail.data, rtol=1e-12)


def test_state_carries_over_to_the_next_forward():
    x, cont, _ = sequences(steps=4)
    whole = make_layer(text("LSTM"))
    (y,) = run(whole, [blob(x), blob(cont)])
    halves = make_layer(text("LSTM"))
    (first,) = run(halves, [blob(x[:2]), blob(cont[:2])])
    halves.forward([blob(x[2:]), blob(cont[2:])], [first])
    np.testing.assert_allclose(first.data, y.data[2:], rtol=1e-12)


def test_expose_hidden_takes_and_gives_h_and_c():
    x, cont, _ = sequences(steps=4)
    cont[0] = 1
    rng = np.random.default_rng(5)
    h0, c0 = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 3))
    layer = make_layer(text("LSTM", expose=True))
    y, h_t, c_t = run(layer, [blob(x), blob(cont), blob(h0), blob(c0)])
    want, h_last, c_last = naive(layer, x, cont, h0=h0, c0=c0)
    np.testing.assert_allclose(y.data, want, rtol=1e-12)
    np.testing.assert_allclose(h_t.data.reshape(2, 3), h_last, rtol=1e-12)
    np.testing.assert_allclose(c_t.data.reshape(2, 3), c_last, rtol=1e-12)


def test_gradient_with_static_input_and_resets():
    x, cont, xs = sequences(steps=4, resets=[(2, 0)])
    layer = make_layer(text("LSTM", static=True))
    check_gradient(layer, [blob(x), blob(cont), blob(xs)], check_bottom=[0, 2])


def test_gradient_plain():
    x, cont, _ = sequences(steps=3, streams=3, dims=(3,), resets=[(1, 2)])
    check_gradient(make_layer(text("LSTM", hidden=2)), [blob(x), blob(cont)], check_bottom=[0])


NET = """
name: "seq"
layer { name: "in" type: "Input" top: "x" top: "cont"
        input_param { shape { dim: 3 dim: 2 dim: 4 } shape { dim: 3 dim: 2 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
        recurrent_param { num_output: 5 weight_filler { type: "gaussian" std: 0.3 } } }
"""


def test_weights_saved_and_loaded_by_the_net_in_caffes_layout():
    param = text_format.Parse(NET, caffe_pb2.NetParameter())
    a = Net(param, caffe_pb2.TEST, dtype=np.float64, rng=np.random.default_rng(1))
    saved = a.to_proto()
    (lp,) = [lp for lp in saved.layer if lp.name == "lstm"]
    assert [list(b.shape.dim) for b in lp.blobs] == [[20, 4], [20], [20, 5]]
    b = Net(param, caffe_pb2.TEST, dtype=np.float64, rng=np.random.default_rng(2))
    assert b.copy_trained_layers_from(saved) == ["lstm"]
    rng = np.random.default_rng(3)
    x, cont = rng.standard_normal((3, 2, 4)), np.array([[0, 0], [1, 1], [1, 0.0]])
    for net in (a, b):
        net.blobs["x"].data[...] = x
        net.blobs["cont"].data[...] = cont
        net.forward()
    np.testing.assert_allclose(b.blobs["h"].data, a.blobs["h"].data, rtol=1e-6)
