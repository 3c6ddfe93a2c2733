"""Bad option values of `pcaffe`: each is one line naming the option, the value given and
what is allowed, exit 1, before anything is read or written. Also inputs that are not
options' values but were taken wrongly: a folder given to classify."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.api import Net
from reliability.rel_util import clean_failure, pcaffe, solver_with, tree

DEPLOY = """name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""

# (case, command after `pcaffe`, the option as argparse names it, the value)
BAD_VALUES = [
    ("`train --iterations -5` (trained nothing, wrote a model)",
     ["train", "--solver", "solver.prototxt", "--iterations", "-5", "--output", "out/a_iter_0"],
     "--iterations/-iterations", "-5", "a whole number of at least 1"),
    ("`train --iterations` beyond Caffe's int32 max_iter ('Value out of range')",
     ["train", "--solver", "solver.prototxt", "--iterations", "99999999999"],
     "--iterations/-iterations", "99999999999", "at most 2147483647"),
    ("`train --iterations 1e3`", ["train", "--solver", "solver.prototxt", "--iterations", "1e3"],
     "--iterations/-iterations", "1e3", "a whole number"),
    ("`test --iterations 0` (printed nothing, exit 0)",
     ["test", "--model", "small.prototxt", "--iterations", "0"],
     "--iterations/-iterations", "0", "a whole number of at least 1"),
    ("`time --iterations 0` (internal error: ZeroDivisionError)",
     ["time", "--model", "small.prototxt", "--iterations", "0"],
     "--iterations/-iterations", "0", "a whole number of at least 1"),
    ("`time --iterations -3` (a table of negative times)",
     ["time", "--model", "small.prototxt", "--iterations", "-3"],
     "--iterations/-iterations", "-3", "a whole number of at least 1"),
    ("`time --batch-size 0` (ignored: timed the net's own batch)",
     ["time", "--model", "small.prototxt", "--batch-size", "0"],
     "--batch-size", "0", "a whole number of at least 1"),
    ("`time --batch-size -1` ('Value out of range: -1')",
     ["time", "--model", "small.prototxt", "--batch-size", "-1"],
     "--batch-size", "-1", "a whole number of at least 1"),
    ("`time --dummy-data 1,a,3` ('invalid literal for int()')",
     ["time", "--model", "small.prototxt", "--dummy-data", "1,a,3"],
     "--dummy-data", "1,a,3", "3 whole numbers of at least 1 as C,H,W"),
    ("`time --dummy-data 0,24,24` (a filler error about an empty axis)",
     ["time", "--model", "small.prototxt", "--dummy-data", "0,24,24"],
     "--dummy-data", "0,24,24", "3 whole numbers of at least 1 as C,H,W"),
    ("`classify --top-k 0` (printed headers without predictions)",
     ["classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel", "--top-k", "0",
      "a.png"], "--top-k", "0", "a whole number of at least 1"),
    ("`classify --batch-size 0`",
     ["classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel", "--batch-size",
      "0", "a.png"], "--batch-size", "0", "a whole number of at least 1"),
    ("`classify --idx-start -1`",
     ["classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel", "--idx-start",
      "-1", "a.png"], "--idx-start", "-1", "a whole number of at least 0"),
    ("`classify --idx-count -2`",
     ["classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel", "--idx-count",
      "-2", "a.png"], "--idx-count", "-2", "a whole number of at least 1"),
    ("`classify --image-size 256` ('invalid literal for int()')",
     ["classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel", "--image-size",
      "256", "a.png"], "--image-size", "256", "2 whole numbers of at least 1 as HxW"),
    ("`classify --mean-values 104,x,123` (a Python float() error)",
     ["classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel", "--mean-values",
      "104,x,123", "a.png"], "--mean-values", "104,x,123", "finite numbers separated by commas"),
    ("`classify --scale nan`",
     ["classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel", "--scale", "nan",
      "a.png"], "--scale", "nan", "a finite number"),
    ("`train --sigint-effect quit`",
     ["train", "--solver", "solver.prototxt", "--sigint-effect", "quit"],
     "--sigint-effect", "'quit'", r"choose from 'stop', 'snapshot', 'none'"),
    ("`test --weights ,` ('.: Is a directory')",
     ["test", "--model", "small.prototxt", "--weights", ","], "--weights", "','",
     "file names separated by commas, none empty"),
    ("`train` without --solver", ["train"], "--solver", None, "required"),
    ("an unknown option (`pcaffe time --iters 5`)",
     ["time", "--model", "small.prototxt", "--iters", "5"], "--iters", None, "unrecognized"),
]


@pytest.mark.parametrize("case,args,option,value,allowed", BAD_VALUES,
                         ids=[c[0] for c in BAD_VALUES])
def test_bad_option_value(run_dir, case, args, option, value, allowed):
    before = tree(run_dir)
    done = pcaffe(*args, cwd=run_dir, timeout=60)
    # unknown options are the top-level parser's to report: `pcaffe: error: ...`
    patterns = [rf"^pcaffe( {args[0]})?: error: ", re.escape(option), re.escape(allowed)
                if "'" not in allowed else allowed]
    if value is not None:
        patterns.append(re.escape(value))
    clean_failure(done, case, *patterns)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert tree(run_dir) == before  # nothing written, nothing taken away


def _deploy_with_weights(root: Path) -> None:
    (root / "deploy.prototxt").write_text(DEPLOY)
    Net(str(root / "deploy.prototxt")).save(root / "w.caffemodel")


def _image(path: Path, value: int, fmt: str = "PNG") -> None:
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path, fmt)


def test_classify_a_folder(tmp_path):
    _deploy_with_weights(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    _image(folder / "b.png", 200)
    _image(folder / "a.PNG", 10)
    _image(folder / "c.jpg", 90, "JPEG")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "sub").mkdir()
    _image(folder / "sub" / "d.png", 50)  # subfolders are not searched
    done = pcaffe("classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel",
                  "--top-k", "1", "images", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    headers = re.findall(r"Prediction for (\S+) ", done.stdout)
    assert headers == ["images/a.PNG", "images/b.png", "images/c.jpg"]


def test_classify_a_folder_without_images(tmp_path):
    _deploy_with_weights(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x\n")
    done = pcaffe("classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel",
                  "empty", cwd=tmp_path)
    clean_failure(done, "a folder without images given to classify",
                  r"^pcaffe classify: error: empty: is a folder with no image files in it",
                  r"\.png")


def test_classify_idx_slice_options_still_checked_against_the_file(tmp_path):
    """--idx-start past the end is a value that parses: the file says what it holds."""
    _deploy_with_weights(tmp_path)
    images = np.zeros((2, 8, 8), np.uint8)
    header = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 8, 8)
    (tmp_path / "two.idx").write_bytes(header + images.tobytes())
    done = pcaffe("classify", "--model", "deploy.prototxt", "--weights", "w.caffemodel",
                  "--idx-start", "5", "two.idx", cwd=tmp_path)
    clean_failure(done, "`classify --idx-start` past the end of an IDX file",
                  r"^pcaffe classify: error: two.idx: images from 5 asked for, the file "
                  r"holds 2 \(0\.\.1\)$")


@pytest.mark.parametrize("field,value,allowed", [
    ("max_iter", -5, ">= 0"), ("snapshot", -3, ">= 0"), ("display", -1, ">= 0"),
    ("test_interval", -30, ">= 0"), ("test_iter", 0, ">= 1"), ("test_iter", -2, ">= 1")])
def test_solver_count_out_of_range(run_dir, field, value, allowed):
    """Before: max_iter -5 wrote an untrained model (exit 0), test_iter 0 or -2 was an
    internal IndexError."""
    name = solver_with(run_dir, "counts.prototxt", **{field: value})
    before = tree(run_dir)
    done = pcaffe("train", "--solver", name, "--output", "out/small_iter_60", cwd=run_dir)
    clean_failure(done, f"solver with `{field}: {value}`",
                  rf"^pcaffe train: error: {field} must be {allowed}", rf"got {value}\b")
    assert tree(run_dir) == before
