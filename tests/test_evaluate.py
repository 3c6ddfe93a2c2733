"""Evaluation: Caffe's trained LeNet on a tiny LMDB of golden digits gives the known confusion."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline_lib.data.db import open_db
from pipeline_lib.evaluate import (
    EvaluationError,
    Tally,
    evaluate_deploy,
    evaluate_net,
    evaluate_scores,
    evaluate_solver,
    evaluation_inputs,
    read_confusion_csv,
    scoring_setup,
    top_k_hits,
    write_reports,
)
from pipeline_lib.proto.datum import array_to_datum
from pipeline_lib.proto.prototxt import parse_net_text, read_net

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
WEIGHTS = GOLDEN / "lenet_iter_10000.caffemodel"
TRAIN_TEST = REPO / "models" / "lenet" / "lenet_train_test.prototxt"
DEPLOY = REPO / "models" / "lenet" / "lenet.prototxt"
N = 7
WRONG = {2: 5, 5: 0}  # record -> the label stored instead of the true one


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN / "caffe_lenet_test100_blobs.npz") as blobs:
        return {k: blobs[k] for k in ("data", "label", "ip2")}


@pytest.fixture
def tiny_db(tmp_path, golden):
    """An LMDB of N golden digits, two of them with a wrong label; and the stored labels."""
    labels = [WRONG.get(i, int(golden["label"][i])) for i in range(N)]
    path = tmp_path / "tiny_lmdb"
    with open_db(path, "w", "lmdb") as db:
        for i in range(N):
            datum = array_to_datum(golden["data"][i][None], labels[i])
            db.put(f"{i:08d}".encode(), datum.SerializeToString())
    return path, np.array(labels)


def lenet_test_net(source: Path, batch: int):
    param = read_net(TRAIN_TEST)
    for layer in param.layer:
        if layer.type == "Data" and layer.include[0].phase == 1:  # TEST
            layer.data_param.source = str(source)
            layer.data_param.batch_size = batch
    return param


def expected_confusion(golden, labels) -> np.ndarray:
    counts = np.zeros((10, 10), np.int64)
    predicted = golden["ip2"][:N].reshape(N, 10).argmax(axis=1)  # Caffe's own activations
    for true, pred in zip(labels, predicted):
        counts[true, pred] += 1
    return counts


def softmax_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    s = scores.astype(np.float64)
    s -= s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def test_test_net_evaluation_gives_the_known_confusion(tiny_db, golden):
    path, labels = tiny_db
    evaluation, info = evaluate_net(lenet_test_net(path, batch=3), WEIGHTS, top_k=(1, 2, 5))
    assert evaluation.count == N  # 3 + 3 + a short batch of 1, each record once
    assert info["scores_blob"] == "ip2" and info["batch_size"] == 3
    assert info["transform"]["scale"] == 0.00390625
    frame = evaluation.confusion
    assert frame.index.name == "true" and frame.columns.name == "predicted"
    np.testing.assert_array_equal(frame.to_numpy(), expected_confusion(golden, labels))
    assert evaluation.accuracy == pytest.approx((N - len(WRONG)) / N)
    scores = golden["ip2"][:N].reshape(N, 10)
    for k in (1, 2, 5):
        assert evaluation.top_k[k] == pytest.approx(top_k_hits(scores, labels, k).mean())
    assert evaluation.loss == pytest.approx(softmax_loss(scores, labels), rel=1e-4)
    per_class = evaluation.per_class_accuracy
    assert per_class["5"] == 0.0  # the one record labelled 5 is a 1
    assert np.isnan(per_class[str(8)])  # no record labelled 8
    d = evaluation.to_dict()
    assert d["per_class_accuracy"]["8"] is None and d["per_class_count"]["5"] == 1
    assert d["top_k"]["1"] == evaluation.accuracy


def test_limit_and_batch_size_override(tiny_db):
    path, _ = tiny_db
    evaluation, info = evaluate_net(lenet_test_net(path, batch=100), WEIGHTS, batch_size=2,
                                    limit=3)
    assert evaluation.count == 3 and info["batch_size"] == 2


def test_deploy_net_evaluation_agrees(tiny_db, golden):
    path, labels = tiny_db
    evaluation = evaluate_deploy(DEPLOY, WEIGHTS, path, batch_size=4)
    np.testing.assert_array_equal(evaluation.confusion.to_numpy(),
                                  expected_confusion(golden, labels))
    assert evaluation.loss is None


def test_solver_evaluation_and_its_inputs(tmp_path, tiny_db):
    path, _ = tiny_db
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(str(lenet_test_net(path, batch=4)))
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net_file}"\nbase_lr: 0.01\n')
    assert evaluation_inputs(solver) == {"solver": [str(solver)], "nets": [str(net_file)],
                                         "data": [str(path)], "means": []}
    evaluation, info = evaluate_solver(solver, WEIGHTS)
    assert evaluation.count == N and info["net_file"] == str(net_file)
    assert evaluation_inputs(REPO / "models/lenet/lenet_solver.prototxt")["data"] == [
        "data/mnist/mnist_test_lmdb"]


def test_reports_are_written(tmp_path, tiny_db):
    path, _ = tiny_db
    evaluation, info = evaluate_net(lenet_test_net(path, batch=3), WEIGHTS)
    out = tmp_path / "out"
    out.mkdir()
    doc = write_reports(evaluation, out / "e.json", out / "c.csv", out / "c.png",
                        title="LeNet", model="lenet", **info)
    saved = json.loads((out / "e.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    assert saved["model"] == "lenet" and saved["count"] == N
    assert saved["confusion_csv"] == str(out / "c.csv")
    pd.testing.assert_frame_equal(read_confusion_csv(out / "c.csv"), evaluation.confusion)
    assert (out / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["c.csv", "c.png", "e.json"]


def test_tally_counts_over_batches_and_ties_count_against():
    scores = np.array([[0.5, 0.5, 0.0], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    labels = np.array([1, 1, 0])
    # row 0: class 0 ties with the true class 1, so top-1 misses; top-2 hits
    np.testing.assert_array_equal(top_k_hits(scores, labels, 1), [False, True, False])
    np.testing.assert_array_equal(top_k_hits(scores, labels, 2), [True, True, False])
    tally = Tally(3, top_k=(1, 2, 7))
    assert tally.ks == [1, 2]  # k above the class count is skipped
    tally.add(scores[:2], labels[:2], loss_sum=1.0)
    tally.add(scores[2:], labels[2:], loss_sum=2.0)
    result = tally.result(["a", "b", "c"])
    assert result.count == 3 and result.loss == pytest.approx(1.0)
    assert result.top_k == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}
    assert result.confusion.loc["b", "a"] == 1 and result.confusion.loc["a", "c"] == 1
    whole = evaluate_scores(scores, labels, top_k=(1, 2))
    np.testing.assert_array_equal(whole.confusion.to_numpy(), result.confusion.to_numpy())
    with pytest.raises(EvaluationError, match="label 3 is not a class index"):
        tally.add(scores[:1], np.array([3]))


def test_nets_that_cannot_be_evaluated_are_refused(tiny_db):
    with pytest.raises(EvaluationError, match="exactly one Data layer"):
        scoring_setup(read_net(DEPLOY))
    net = parse_net_text("""
        layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }
                data_param { source: "x" } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
                inner_product_param { num_output: 2 } }
    """, "n")
    with pytest.raises(EvaluationError, match="no Accuracy or loss layer reads the labels"):
        scoring_setup(net)
    assert scoring_setup(net, scores_blob="fc").scores_blob == "fc"


def test_stages_and_deprecated_transform_fields():
    net = parse_net_text("""
        layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }
                data_param { source: "x" scale: 0.5 } }
        layer { name: "a" type: "InnerProduct" bottom: "data" top: "s"
                include { stage: "wide" } inner_product_param { num_output: 4 } }
        layer { name: "b" type: "InnerProduct" bottom: "data" top: "s"
                exclude { stage: "wide" } inner_product_param { num_output: 2 } }
        layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "label" top: "acc" }
    """, "n")
    setup = scoring_setup(net, stages=["wide"])
    assert setup.transform.scale == 0.5 and setup.scores_blob == "s"
    scoring = setup.with_input((2, 1, 3, 3))
    assert [lp.name for lp in scoring.layer] == ["d", "a", "acc"]
    assert not any(len(lp.include) or len(lp.exclude) for lp in scoring.layer)
    assert [list(s.dim) for s in scoring.layer[0].input_param.shape] == [[2, 1, 3, 3], [2]]


def test_confusion_figure_shows_mistakes_on_a_log_scale_and_per_class_accuracy():
    import matplotlib.pyplot as plt

    from pipeline_lib.evaluate import confusion_figure, confusion_frame

    counts = np.array([[980, 0, 0], [1, 1130, 4], [30, 2, 1000]])
    fig = confusion_figure(confusion_frame(counts, ["a", "b", "c"]), title="t")
    try:
        ax, ax_acc, bar = fig.axes
        mask, mistakes = ax.get_images()
        off = mistakes.get_array()
        # the diagonal is masked, cells without mistakes are blank, the rest are fractions
        assert off.mask[0, 0] and off.mask[1, 1] and off.mask[0, 1]
        assert off[1, 0] == pytest.approx(1 / 1135) and off[2, 0] == pytest.approx(30 / 1032)
        norm = mistakes.norm
        assert type(norm).__name__ == "LogNorm"
        assert norm.vmax == pytest.approx(30 / 1032)
        # one mistake in 1135 is tinted, not white; the scale is logarithmic
        assert norm(1 / 1135) > 0.2 and norm(2 / 1032) == pytest.approx(
            np.log(2 / 1032 / norm.vmin) / np.log(norm.vmax / norm.vmin))
        assert "log scale" in bar.get_ylabel()
        (dots,) = ax_acc.get_lines()
        np.testing.assert_allclose(dots.get_xdata(), [1.0, 1130 / 1135, 1000 / 1032])
        np.testing.assert_array_equal(dots.get_ydata(), [0, 1, 2])
        assert ax_acc.get_ylim() == ax.get_ylim()  # the rows line up
        assert [t.get_text() for t in ax_acc.texts] == ["1.000", "0.996", "0.969"]
        assert {t.get_text() for t in ax.texts} == {"980", "1", "4", "30", "2", "1130", "1000"}
    finally:
        plt.close(fig)
