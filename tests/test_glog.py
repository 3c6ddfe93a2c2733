"""glog's classic line format, and logs that Caffe's parse_log.py rules can read."""

from __future__ import annotations

import io
import math
import re
import sys
import time

import pytest
from caffe_log_parser import parse_caffe_log
from conftest import DATA

from pipeline_lib.core.glog import GlogLogger, format_prefix

PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} [ \d]{5} \S+:\S+\] ")


def at(y, mo, d, h, mi, s, micro) -> float:
    return time.mktime((y, mo, d, h, mi, s, 0, 0, -1)) + micro / 1e6


def test_classic_prefix_matches_caffes_lines():
    when = at(2024, 11, 23, 8, 24, 34, 466672)
    assert format_prefix("I", when, 8827, "solver.cpp:239") == \
        "I1123 08:24:34.466672  8827 solver.cpp:239] "
    assert format_prefix("W", at(2024, 1, 2, 3, 4, 5, 6), 123456, "x.py:1") == \
        "W0102 03:04:05.000006 123456 x.py:1] "


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="unknown log level 'X'"):
        format_prefix("X", 0.0, 1, "a:1")


def test_logger_writes_file_and_stream_with_caller_source(tmp_path):
    stream = io.StringIO()
    path = tmp_path / "train.log"
    with GlogLogger(path, stream=stream, thread_id=42) as log:
        here = sys._getframe().f_lineno + 1
        log.info("Solving LeNet")
        log.warning("two\nlines")
        log.error("ends with newline\n")
    text = path.read_text()
    assert text == stream.getvalue()
    lines = text.splitlines()
    assert len(lines) == 4
    assert PREFIX.match(lines[0]) and lines[0].endswith(f"test_glog.py:{here}] Solving LeNet")
    assert lines[1].startswith("W") and lines[1].endswith("] two") and lines[2] == "lines"
    assert lines[3].startswith("E") and lines[3].endswith("] ends with newline")
    assert "   42 " in lines[0]


def test_logger_appends(tmp_path):
    path = tmp_path / "a.log"
    for word in ("one", "two"):
        with GlogLogger(path, stderr=False) as log:
            log.info(word)
    assert [line.split("] ")[1] for line in path.read_text().splitlines()] == ["one", "two"]


def test_parser_reads_caffes_golden_lenet_log():
    train, test = parse_caffe_log((DATA / "golden" / "caffe_lenet_train.log").read_text())
    assert [r["NumIters"] for r in train] == list(range(0, 10000, 100))
    assert [r["NumIters"] for r in test] == list(range(0, 10001, 500))
    assert train[1]["loss"] == 0.199011 and train[1]["LearningRate"] == 0.01
    assert train[2]["LearningRate"] == 0.00992565  # parse_log's lag: the lr line comes last
    assert test[-1]["accuracy"] == 0.9905 and test[-1]["loss"] == 0.0284131
    assert test[1]["Seconds"] == pytest.approx(16.148, abs=1e-3)


def test_our_lines_parse_like_caffes(tmp_path):
    clock = iter(at(2024, 11, 23, 8, 0, s, 0) for s in range(60))
    log = GlogLogger(tmp_path / "t.log", stderr=False, clock=lambda: next(clock), thread_id=7)
    log.info("Solving tiny")
    log.info("Iteration 0, Testing net (#0)")
    log.info("    Test net output #0: accuracy = 0.5")
    log.info("    Test net output #1: loss = 0.693147 (* 1 = 0.693147 loss)")
    log.info("Iteration 0 (0 iter/s, 0.01s/10 iters), loss = 0.7")
    log.info("    Train net output #0: loss = 0.7 (* 1 = 0.7 loss)")
    log.info("Iteration 0, lr = 0.01")
    log.info("Iteration 10 (1000 iter/s, 0.01s/10 iters), loss = 1.5e-05")
    log.info("    Train net output #0: loss = 1.5e-05 (* 1 = 1.5e-05 loss)")
    log.info("Iteration 10, lr = 0.0099")
    log.close()
    train, test = parse_caffe_log((tmp_path / "t.log").read_text())
    assert train == [
        {"NumIters": 0, "Seconds": 5.0, "LearningRate": 0.01, "loss": 0.7},
        {"NumIters": 10, "Seconds": 8.0, "LearningRate": 0.01, "loss": 1.5e-05}]
    assert len(test) == 1 and math.isnan(test[0].pop("LearningRate"))
    assert test == [{"NumIters": 0, "Seconds": 2.0, "accuracy": 0.5, "loss": 0.693147}]
