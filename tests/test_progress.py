"""Progress: a live line on a terminal (log lines above it), a few log lines elsewhere."""

import io
import logging
import os
import pty
import re
import select
import subprocess
import sys

import pandas as pd
import pytest
from caffe_log_parser import parse_caffe_log
from test_reproducible import make_run_dir

from pipeline_lib.core.glog import GlogLogger
from pipeline_lib.core.progress import (
    LiveLine,
    Progress,
    Rate,
    format_amount,
    format_duration,
    live_line,
)


class _Tty(io.StringIO):
    def isatty(self):
        return True


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_non_terminal_logs_quarters_with_time_left_and_done(caplog):
    stream, clock = io.StringIO(), _Clock()
    with caplog.at_level(logging.INFO, logger="t"):
        with Progress(
            "writing", total=100, unit="records", logger=logging.getLogger("t"), stream=stream,
            clock=clock,
        ) as progress:
            for _ in range(10):
                clock.now += 2.0  # 10 records every 2 s: 5 records/s
                progress.update(10)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == [
        "writing: 25% (30 of 100 records, 0:14 left)",
        "writing: 50% (50 of 100 records, 0:10 left)",
        "writing: 75% (80 of 100 records, 0:04 left)",
    ]
    assert messages[3] == "writing: done, 100 records in 20.0 s"
    assert stream.getvalue() == ""


def test_terminal_redraws_one_line_with_rate_and_time_left(caplog):
    stream, clock = _Tty(), _Clock()
    with caplog.at_level(logging.INFO, logger="t"):
        with Progress("get", total=4 << 20, unit="B", logger=logging.getLogger("t"),
                      stream=stream, min_interval=0, clock=clock) as progress:
            clock.now += 1.0
            progress.update(1 << 20)
            clock.now += 1.0
            progress.update(1 << 20)
    text = stream.getvalue()
    assert "\r\x1b[Kget:  25.0% 1.0 MiB of 4.0 MiB (1.0 MiB/s, 0:03 left)" in text
    assert "\r\x1b[Kget:  50.0% 2.0 MiB of 4.0 MiB (1.0 MiB/s, 0:02 left)" in text
    assert "\n" not in text and text.endswith("\r\x1b[K")  # erased at the end
    assert [r.getMessage() for r in caplog.records][0] == "get: done, 2.0 MiB in 2.0 s"


def test_log_lines_go_above_the_live_line():
    stream = _Tty()
    line = live_line(stream)
    line.show("status 1")
    GlogLogger(stream=stream, clock=lambda: 0.0, thread_id=7).info("hello", source="x.py:1")
    line.clear()
    out = stream.getvalue()
    # the status, erased, the log line, the status again below it, erased at the end
    assert re.fullmatch(r"\r\x1b\[Kstatus 1\r\x1b\[KI\d{4} [\d:.]+ +7 x\.py:1\] hello\n"
                        r"status 1\r\x1b\[K", out), out
    plain = io.StringIO()
    live_line(plain).show("never drawn")
    GlogLogger(stream=plain, clock=lambda: 0.0, thread_id=7).info("hello", source="x.py:1")
    assert plain.getvalue().endswith("] hello\n") and "\r" not in plain.getvalue()


def _read_all(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        out += os.read(fd, 4096)
    return out.decode()


def test_processes_on_one_terminal_take_turns_drawing():
    """Two jobs of one Snakemake run on one terminal (two open files of one pty, as two
    processes have): the second draws nothing while the first's line is up, and draws
    once the first has erased its line."""
    main, child = pty.openpty()
    name = os.ttyname(child)
    first, second = open(name, "w"), open(name, "w")  # noqa: SIM115 - closed below
    try:
        a, b = LiveLine(first), LiveLine(second)
        a.show("first job")
        b.show("second job")
        assert "first job" in _read_all(main) and b.text == ""
        a.clear()
        b.show("second job again")
        assert "second job again" in _read_all(main)
        b.clear()
    finally:
        first.close()
        second.close()
        os.close(main)
        os.close(child)


def test_failure_logs_no_done_line(caplog):
    with caplog.at_level(logging.INFO, logger="t"):
        try:
            with Progress("x", total=4, logger=logging.getLogger("t"), stream=io.StringIO()):
                raise ValueError
        except ValueError:
            pass
    assert caplog.records == []


def test_rate_and_formats():
    clock = _Clock()
    rate = Rate(10, clock, window=2)
    for _ in range(3):
        clock.now += 1
        rate.update(rate.recent[-1][1] + 5)
    clock.now += 1
    rate.update(rate.recent[-1][1] + 1)
    assert rate.average() == 4.0 and rate.current() == 1.0 and rate.seconds_left(8) == 2.0
    assert format_amount(1536, "B") == "1.5 KiB"
    assert format_amount(60000, "records") == "60,000 records"
    assert format_duration(65) == "1:05" and format_duration(3723) == "1:02:03"
    assert format_duration(float("inf")) == "?" and format_duration(float("nan")) == "?"


def read_all(fd: int, proc: subprocess.Popen) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


@pytest.mark.slow  # a training process: about 20 s on the shared 2-core machine
def test_training_on_a_terminal_shows_a_live_line_and_logs_plain_glog(tmp_path):
    # `pcaffe train --log` with stderr on a pseudo-terminal: the terminal gets the live line
    # (iteration, it/s, smoothed loss, time left) below the glog lines; the log file gets the
    # glog lines alone, which a parse_log.py-style parser reads as the metrics CSV has them.
    run = make_run_dir(tmp_path / "run")
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_lib.cli", "train", "--solver", "solver.prototxt",
         "--iterations", "30", "--output", "results/small_iter_30", "--log", "train.log"],
        cwd=run, stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    try:
        screen = read_all(main, proc).decode()
    finally:
        os.close(main)
    assert proc.wait(timeout=60) == 0, screen[-3000:]
    lines = re.findall(r"\r\x1b\[K(Iteration [^\r\n]*)", screen)
    training = [t for t in lines if "it/s" in t]
    assert training, screen[-3000:]
    assert re.fullmatch(r"Iteration \d+/30 \(\d+%\), [\d.e+]+ it/s, smoothed loss [\d.e+-]+, "
                        r"(\d+:\d\d|\?) left", training[-1]), training[-1]
    assert any(re.search(r"testing net #0: batch \d+/\d+, ", t) for t in lines)
    assert "Optimization Done." in screen and screen.rstrip("\r\n").endswith(".solverstate")
    log = (run / "train.log").read_text()
    assert "\r" not in log and "\x1b" not in log and "it/s," not in log
    # the terminal without its live line is the log file, line for line
    segments = screen.replace("\r\n", "\n").split("\r\x1b[K")
    glog_lines = "".join(seg[: seg.rfind("\n") + 1] for seg in segments)
    assert log in glog_lines and log.count("\n") > 50
    train, test = parse_caffe_log(log)
    df = pd.read_csv(run / "results/small_iter_30_metrics.csv")
    csv_train, csv_test = df[df.kind == "train"], df[df.kind == "test"]
    assert [r["NumIters"] for r in train] == csv_train["iter"].tolist()[:-1]  # no outputs at 30
    assert [r["NumIters"] for r in test] == csv_test["iter"].tolist() == [0, 15, 30]
    assert [r["accuracy"] for r in test] == [float(format(v, ".6g"))
                                            for v in csv_test["out_accuracy"]]
