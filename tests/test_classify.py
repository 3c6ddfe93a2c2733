"""`pcaffe classify`: Caffe's trained LeNet names golden MNIST digits from PNG and IDX files."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.api import Net
from pipeline_lib.classify import (
    ClassifyError,
    is_idx_images,
    output_probabilities,
    parse_input,
)
from pipeline_lib.cli import main
from pipeline_lib.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
DEPLOY = str(REPO / "models" / "lenet" / "lenet.prototxt")
WEIGHTS = str(GOLDEN / "lenet_iter_10000.caffemodel")
BASE = ["classify", "--model", DEPLOY, "--weights", WEIGHTS]
HEADER = re.compile(r"^---------- Prediction for (.+) ----------$")


@pytest.fixture(scope="module")
def digits():
    with np.load(GOLDEN / "caffe_lenet_test100_blobs.npz") as blobs:
        return blobs["data"], blobs["label"]


def parse_text(stdout: str) -> list[tuple[str, list[tuple[float, str]]]]:
    """[(input, [(probability, label), ...]), ...] from the text output."""
    out = []
    for line in stdout.splitlines():
        if m := HEADER.match(line):
            out.append((m.group(1), []))
        else:
            prob, label = line.split(" - ")
            out[-1][1].append((float(prob), label.strip('"')))
    return out


def test_pngs_are_classified_right(tmp_path, digits, capsys):
    images, labels = digits
    paths = []
    for i in range(10):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(images[i]).save(path)
        paths.append(str(path))
    assert main([*BASE, "--top-k", "3", *paths]) == 0
    captured = capsys.readouterr()
    result = parse_text(captured.out)
    assert [name for name, _ in result] == paths
    assert [int(top[0][1]) for _, top in result] == list(labels[:10])
    for _, top in result:
        assert len(top) == 3 and top[0][0] > 0.9
        assert [p for p, _ in top] == sorted((p for p, _ in top), reverse=True)
    # the transform came from the weights: LeNet's scale 1/256
    assert "transform_param of" in captured.err and "0.00390625" in captured.err


def test_json_output(tmp_path, digits, capsys):
    images, labels = digits
    Image.fromarray(images[3]).save(tmp_path / "d.png")
    assert main([*BASE, "--json", "--top-k", "10", str(tmp_path / "d.png")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["transform"]["scale"] == 0.00390625 and doc["weights"] == [WEIGHTS]
    (pred,) = doc["predictions"]
    assert pred["input"] == str(tmp_path / "d.png")
    assert pred["top"][0]["class"] == labels[3] and pred["top"][0]["label"] == str(labels[3])
    assert sorted(t["class"] for t in pred["top"]) == list(range(10))
    assert sum(t["probability"] for t in pred["top"]) == pytest.approx(1, rel=1e-5)


def test_idx_slices_and_options(tmp_path, digits, capsys):
    images, labels = digits
    idx = tmp_path / "digits-idx3-ubyte"
    write_idx(images[:20], idx)
    assert is_idx_images(idx)
    assert main([*BASE, "--top-k", "1", f"{idx}:3:4", f"{idx}:15"]) == 0
    result = parse_text(capsys.readouterr().out)
    assert [name for name, _ in result] == [f"{idx}[{i}]" for i in (3, 4, 5, 6, 15)]
    assert [int(top[0][1]) for _, top in result] == [labels[i] for i in (3, 4, 5, 6, 15)]

    assert main([*BASE, "--top-k", "1", "--idx-start", "10", "--idx-count", "10", "--batch-size",
                 "3", str(idx)]) == 0  # batches of 3, the last one short
    result = parse_text(capsys.readouterr().out)
    assert [int(top[0][1]) for _, top in result] == list(labels[10:20])


def test_label_names(tmp_path, digits, capsys):
    images, labels = digits
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (tmp_path / "words.txt").write_text("\n".join(names) + "\n")
    idx = tmp_path / "d-idx3-ubyte"
    write_idx(images[:2], idx)
    assert main([*BASE, "--labels", str(tmp_path / "words.txt"), "--top-k", "1", str(idx)]) == 0
    result = parse_text(capsys.readouterr().out)
    assert [top[0][1] for _, top in result] == [names[labels[0]], names[labels[1]]]

    (tmp_path / "short.txt").write_text("a\nb\n")
    assert main([*BASE, "--labels", str(tmp_path / "short.txt"), str(idx)]) == 1
    assert "2 labels but the net's output 'prob' has 10 classes" in capsys.readouterr().err


def test_overrides_change_the_transform(tmp_path, digits, capsys):
    images, _ = digits
    idx = tmp_path / "d-idx3-ubyte"
    write_idx(images[:1], idx)
    assert main([*BASE, "--json", "--scale", "1", "--mean-values", "3", str(idx)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["transform"]["scale"] == 1 and doc["transform"]["mean_values"] == [3.0]


def test_bad_inputs_fail_with_one_line(tmp_path, digits, capsys):
    images, _ = digits
    idx = tmp_path / "d-idx3-ubyte"
    write_idx(images[:5], idx)
    assert main([*BASE, f"{idx}:4:3"]) == 1
    assert "images 4..6 asked for, the file holds 5" in capsys.readouterr().err
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    assert main([*BASE, f"{tmp_path / 'a.png'}:1"]) == 1
    assert "only IDX files take a :START:COUNT slice" in capsys.readouterr().err
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert main([*BASE, str(tmp_path / "junk.png")]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("pcaffe classify: error:") and "junk.png" in err
    assert main([*BASE, str(tmp_path / "missing.png")]) == 1
    assert "missing.png: no such file" in capsys.readouterr().err


def test_parse_input():
    assert parse_input("a.idx:3:4") == ("a.idx", 3, 4)
    assert parse_input("a.idx:7") == ("a.idx", 7, 1)
    assert parse_input("a.png", 2, None) == ("a.png", 2, None)


def test_scores_get_a_softmax_but_probabilities_do_not():
    net = Net(DEPLOY)
    probs = np.array([[0.2, 0.8]], np.float32)
    np.testing.assert_allclose(output_probabilities(net, "prob", probs), probs)
    scores = output_probabilities(net, "ip2", np.array([[0.0, np.log(3.0)]]))
    np.testing.assert_allclose(scores, [[0.25, 0.75]])
    with pytest.raises(ClassifyError, match="one score per class"):
        output_probabilities(net, "conv1", np.zeros((1, 2, 3, 3)))


def test_console_script_prints_predictions_on_stdout(tmp_path, digits):
    images, labels = digits
    idx = tmp_path / "d-idx3-ubyte"
    write_idx(images[:3], idx)
    run = subprocess.run([sys.executable, "-m", "pipeline_lib.cli", *BASE, "--top-k", "1",
                          str(idx)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert [int(top[0][1]) for _, top in parse_text(run.stdout)] == list(labels[:3])


COLOUR_NET = """
name: "colour"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_colour_image_with_mean_file_is_resized_and_cropped(tmp_path, capsys):
    from pipeline_lib.preprocess import Preprocessor
    from pipeline_lib.proto.blobproto import write_mean_binaryproto
    from pipeline_lib.proto.prototxt import parse_net_text

    (tmp_path / "deploy.prototxt").write_text(COLOUR_NET)
    net = Net(parse_net_text(COLOUR_NET, "colour"))
    net.save(tmp_path / "w.caffemodel")
    mean = np.random.default_rng(0).uniform(0, 255, (3, 6, 6)).astype(np.float32)
    write_mean_binaryproto(mean, tmp_path / "mean.binaryproto")
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert main(["classify", "--model", str(tmp_path / "deploy.prototxt"), "--weights",
                 str(tmp_path / "w.caffemodel"), "--mean", str(tmp_path / "mean.binaryproto"),
                 "--scale", "0.01", "--top-k", "3", "--json", str(tmp_path / "c.png")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["transform"]["image_size"] == [6, 6] and doc["transform"]["crop_size"] == 4
    pp = Preprocessor((3, 4, 4), mean=mean, scale=0.01)
    want = net.forward(data=pp([pp.load(tmp_path / "c.png")]))["prob"][0]
    got = {t["class"]: t["probability"] for t in doc["predictions"][0]["top"]}
    np.testing.assert_allclose([got[c] for c in range(3)], want, rtol=1e-6)
