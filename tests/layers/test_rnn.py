"""RNN: Caffe's learnable blobs (order and shapes), forward against a per-stream loop of the
formulas, the cont = 0 reset, state carried between forwards and exposed, and
finite-difference gradients (with a static input and mid-sequence resets)."""

import numpy as np
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient
from recurrent_util import sequences, text


def naive(layer, x, cont, xs=None, h0=None):
    """Caffe's RNN step by step, one stream at a time."""
    b = [np.asarray(p.data) for p in layer.blobs]
    w_xh, b_h = b[0], b[1]
    w_xs = b[2] if xs is not None else None
    w_hh, w_ho, b_o = b[-3], b[-2], b[-1]
    steps, streams = cont.shape
    hidden = b_h.size
    h = np.zeros((streams, hidden)) if h0 is None else h0.reshape(streams, hidden).copy()
    out = np.zeros((steps, streams, hidden))
    for t in range(steps):
        for n in range(streams):
            a = w_hh @ (cont[t, n] * h[n]) + w_xh @ x[t, n].ravel() + b_h
            if xs is not None:
                a += w_xs @ xs[n].ravel()
            h[n] = np.tanh(a)
            out[t, n] = np.tanh(w_ho @ h[n] + b_o)
    return out, h


def test_blobs_in_caffes_order_and_shapes():
    x, cont, xs = sequences()
    layer = make_layer(text("RNN", hidden=3))
    run(layer, [blob(x), blob(cont)])
    assert [b.shape for b in layer.blobs] == [(3, 4), (3,), (3, 3), (3, 3), (3,)]
    layer = make_layer(text("RNN", hidden=3, static=True))
    run(layer, [blob(x), blob(cont), blob(xs)])
    assert [b.shape for b in layer.blobs] == [(3, 4), (3,), (3, 3), (3, 3), (3, 3), (3,)]


def test_forward_matches_the_formulas_with_static_input_and_a_reset(xp):
    x, cont, xs = sequences(resets=[(2, 1)])
    layer = make_layer(text("RNN", static=True), xp)
    (y,) = run(layer, [blob(x, xp), blob(cont, xp), blob(xs, xp)])
    assert y.shape == (4, 2, 3)
    np.testing.assert_allclose(host(y.data), naive(layer, x, cont, xs)[0], rtol=1e-12)


def test_cont_zero_starts_a_new_sequence():
    x, cont, _ = sequences(steps=5, resets=[(3, 0), (3, 1)])
    layer = make_layer(text("RNN"))
    (y,) = run(layer, [blob(x), blob(cont)])
    (tail,) = run(layer, [blob(x[3:]), blob(cont[3:])])
    np.testing.assert_allclose(y.data[3:], tail.data, rtol=1e-12)


def test_state_carries_over_to_the_next_forward():
    x, cont, _ = sequences(steps=4)
    whole = make_layer(text("RNN"))
    (y,) = run(whole, [blob(x), blob(cont)])
    halves = make_layer(text("RNN"))
    (first,) = run(halves, [blob(x[:2]), blob(cont[:2])])
    halves.forward([blob(x[2:]), blob(cont[2:])], [first])
    np.testing.assert_allclose(first.data, y.data[2:], rtol=1e-12)


def test_expose_hidden_takes_and_gives_the_state():
    x, cont, _ = sequences(steps=4)
    layer = make_layer(text("RNN", expose=True))
    h0 = np.random.default_rng(5).standard_normal((1, 2, 3))
    cont[0] = 1  # keep h_0
    y, h_t = run(layer, [blob(x), blob(cont), blob(h0)])
    want, h_last = naive(layer, x, cont, h0=h0)
    np.testing.assert_allclose(y.data, want, rtol=1e-12)
    np.testing.assert_allclose(h_t.data.reshape(2, 3), h_last, rtol=1e-12)
    y2, _ = run(layer, [blob(x[2:]), blob(cont[2:]), blob(naive(layer, x[:2], cont[:2], h0=h0)[1]
                                                           .reshape(1, 2, 3))])
    np.testing.assert_allclose(y2.data, want[2:], rtol=1e-12)


def test_gradient_with_static_input_and_resets():
    x, cont, xs = sequences(steps=4, resets=[(2, 0)])
    layer = make_layer(text("RNN", static=True))
    check_gradient(layer, [blob(x), blob(cont), blob(xs)], check_bottom=[0, 2])


def test_gradient_plain():
    x, cont, _ = sequences(steps=3, streams=3, dims=(3,), resets=[(1, 2)])
    check_gradient(make_layer(text("RNN", hidden=2)), [blob(x), blob(cont)], check_bottom=[0])
