"""A reader of Caffe training logs with the rules of Caffe's tools/extra/parse_log.py.

Written for the tests from what parse_log.py is documented to do (not its
code): lines start with glog's classic prefix `I1123 08:24:34.466672 ...`;
timing starts at the line containing "Solving"; the current iteration is the
last `Iteration N` seen, and nothing is read before the first one; lines
whose prefix does not parse as a date are skipped; `lr = X` sets the learning
rate; `Train net output #k: name = value` and `Test net output #k: name =
value` fill the row of the current iteration.
"""

from __future__ import annotations

import datetime as dt
import re

ITERATION = re.compile(r"Iteration (\d+)")
TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = ([-+.\deE]+)")
TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = ([-+.\deE]+)")
LEARNING_RATE = re.compile(r"lr = ([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)")


def line_time(line: str, year: int) -> dt.datetime:
    """The time of a log line: `<L>MMDD HH:MM:SS.ffffff ...` (ValueError if it has none)."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError("no prefix")
    stamp, clock = fields[0], fields[1]
    month, day = int(stamp[1:3]), int(stamp[3:])
    hms, micro = clock.split(".")
    hour, minute, second = (int(x) for x in hms.split(":"))
    return dt.datetime(year, month, day, hour, minute, second, int(micro))


def parse_caffe_log(text: str, year: int = 2024) -> tuple[list[dict], list[dict]]:
    """(train rows, test rows): dicts with NumIters, Seconds, LearningRate and each output."""
    lines = text.splitlines()
    start = next(line_time(line, year) for line in lines if "Solving" in line)
    iteration, lr = None, float("nan")
    rows: dict[str, dict[int, dict]] = {"train": {}, "test": {}}
    for line in lines:
        m = ITERATION.search(line)
        if m:
            iteration = int(m.group(1))
        if iteration is None:
            continue
        try:
            seconds = (line_time(line, year) - start).total_seconds()
        except ValueError:
            continue
        m = LEARNING_RATE.search(line)
        if m:
            lr = float(m.group(1))
        for kind, regex in (("train", TRAIN_OUTPUT), ("test", TEST_OUTPUT)):
            m = regex.search(line)
            if m:
                row = rows[kind].setdefault(iteration, {"NumIters": iteration,
                                                        "Seconds": seconds, "LearningRate": lr})
                row[m.group(2)] = float(m.group(3))
    train, test = list(rows["train"].values()), list(rows["test"].values())
    for table in (train, test):  # the first rows come before any lr line
        if len(table) > 1:
            table[0]["LearningRate"] = table[1]["LearningRate"]
    return train, test
