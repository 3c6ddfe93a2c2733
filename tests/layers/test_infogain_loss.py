"""InfogainLoss: H = I equals SoftmaxWithLoss, a general H by hand, H from a .binaryproto
or a third bottom, ignore_label, the other axis, the probability top, errors, gradients."""

import numpy as np
import pytest
from basic_layer_util import blob, host, make_layer, run
from gradient_check import check_gradient

from pipeline_lib.proto.blobproto import array_to_blob_proto


def text(source=None, extra="", three=False, tops=("loss",)):
    t = 'name: "info" type: "InfogainLoss" bottom: "x" bottom: "label" '
    t += 'bottom: "H" ' if three else ""
    t += " ".join(f'top: "{n}"' for n in tops)
    if source is not None:
        t += f' infogain_loss_param {{ source: "{source}" }}'
    return t + " " + extra


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def naive(x, labels, h, norm):
    p = softmax(x)
    total = 0.0
    for i, y in enumerate(labels.astype(int)):
        total -= (h[y] * np.log(p[i])).sum()
    return total / norm


def example(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 3)), np.array([0.0, 2.0, 1.0, 2.0]), rng.uniform(0, 1, (3, 3))


def write_h(path, h, shape=None):
    path.write_bytes(array_to_blob_proto(h.reshape(shape or h.shape)).SerializeToString())


def test_identity_matches_softmax_with_loss(tmp_path):
    x, labels, _ = example()
    write_h(tmp_path / "h.binaryproto", np.eye(3), (1, 1, 3, 3))
    (loss,) = run(make_layer(text(tmp_path / "h.binaryproto")), [blob(x), blob(labels)])
    p = softmax(x)
    want = -np.log(p[np.arange(4), labels.astype(int)]).mean()
    assert float(loss.data) == pytest.approx(want, rel=1e-12)


def test_third_bottom_general_h_and_probability_top(xp):
    x, labels, h = example(1)
    layer = make_layer(text(three=True, tops=("loss", "prob")), xp)
    loss, prob = run(layer, [blob(x, xp), blob(labels, xp), blob(h, xp)])
    assert float(host(loss.data)) == pytest.approx(naive(x, labels, h, 4), rel=1e-12)
    np.testing.assert_allclose(host(prob.data), softmax(x), rtol=1e-12)


def test_ignore_label_and_normalization_none():
    x, labels, h = example(2)
    labels[1] = -1
    layer = make_layer(text(three=True, extra="loss_param { ignore_label: -1 "
                                              "normalization: NONE }"))
    bottom = [blob(x), blob(labels), blob(h)]
    (loss,) = run(layer, bottom)
    keep = [0, 2, 3]
    assert float(loss.data) == pytest.approx(naive(x[keep], labels[keep], h, 1), rel=1e-12)
    loss.diff[...] = 1
    layer.backward([loss], [True, False, False], bottom)
    assert (bottom[0].diff[1] == 0).all() and (bottom[0].diff[0] != 0).all()


def test_axis_2():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 3))  # classes on axis 2
    labels = rng.integers(0, 3, (2, 5)).astype(float)
    h = rng.uniform(0, 1, (3, 3))
    layer = make_layer(text(three=True, extra="infogain_loss_param { axis: 2 }"))
    (loss,) = run(layer, [blob(x), blob(labels), blob(h)])
    want = naive(x.reshape(10, 3), labels.reshape(10), h, 10)
    assert float(loss.data) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("mode", ["VALID", "BATCH_SIZE"])
def test_gradient(tmp_path, mode):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 2))
    labels = rng.integers(0, 4, (3, 2)).astype(float)
    labels[0, 1] = 9
    write_h(tmp_path / "h.binaryproto", rng.uniform(0, 2, (4, 4)))
    layer = make_layer(text(tmp_path / "h.binaryproto",
                            f"loss_param {{ ignore_label: 9 normalization: {mode} }}"))
    check_gradient(layer, [blob(x), blob(labels)], check_bottom=[0])


def test_wrong_sized_h_is_an_error():
    x, labels, _ = example()
    with pytest.raises(ValueError, match=r"'info'.*holds 4 values; 3 classes need 3x3"):
        run(make_layer(text(three=True)), [blob(x), blob(labels), blob(np.eye(2))])


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"'info'.*infogain_loss_param.source .*cannot read"):
        run(make_layer(text(tmp_path / "none.binaryproto")), [blob(np.zeros((1, 2))),
                                                              blob(np.zeros(1))])
    with pytest.raises(ValueError, match=r"third bottom or in infogain_loss_param.source"):
        run(make_layer(text()), [blob(np.zeros((1, 2))), blob(np.zeros(1))])


def test_legacy_normalize_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"'info'.*use loss_param.normalization"):
        run(make_layer(text(three=True, extra="loss_param { normalize: true }")),
            [blob(np.zeros((1, 2))), blob(np.zeros(1)), blob(np.eye(2))])
