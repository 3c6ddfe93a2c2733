"""Command-line option values checked where they are parsed, and a parser that says so in
one line.

Each type below rejects a bad value with what was given and what is allowed;
`OneLineParser` prints that, after the option's name, as one line
(`pcaffe time: error: argument --iterations/-iterations: got '0'; expected a whole
number of at least 1`) and exits 1, as every other bad input does.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = ["OneLineParser", "add_debug", "at_least", "file_list", "finite_float", "gpu_list",
           "invalid", "name_list", "numbers", "positive_int", "positive_ints", "size_hw",
           "whole_number"]

INT32_MAX = 2**31 - 1  # Caffe's counts (max_iter, batch_size, ...) are int32


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 1."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(1)


def add_debug(parser: argparse.ArgumentParser, *, command: bool = False) -> None:
    """`--debug`: tracebacks instead of one-line errors. On a sub-command's parser
    (`command`) it defaults to SUPPRESS, so leaving it out after the command does not undo
    a `--debug` given before it."""
    parser.add_argument("--debug", action="store_true",
                        default=argparse.SUPPRESS if command else False,
                        help="show tracebacks on errors")


def invalid(text: str, expected: str) -> argparse.ArgumentTypeError:
    """A type's error: the value given and what is allowed."""
    return argparse.ArgumentTypeError(f"got {text!r}; expected {expected}")


def at_least(low: int, high: int = INT32_MAX) -> Callable[[str], int]:
    """A type: a whole number from `low` to `high`."""
    expected = f"a whole number of at least {low}" + (
        f" and at most {high}" if high != INT32_MAX else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise invalid(text, expected) from None
        if not low <= value <= high:
            raise invalid(text, expected if value < low else f"at most {high}")
        return value

    return parse


positive_int = at_least(1)


def whole_number(text: str) -> int:
    """A type: any int32 whole number, negative too (Caffe's `-level`)."""
    try:
        value = int(text)
    except ValueError:
        raise invalid(text, "a whole number (e.g. 0, 2 or -1)") from None
    if not -INT32_MAX - 1 <= value <= INT32_MAX:
        raise invalid(text, f"a whole number from {-INT32_MAX - 1} to {INT32_MAX}")
    return value


def finite_float(text: str) -> float:
    """A type: a finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise invalid(text, "a number") from None
    if not math.isfinite(value):
        raise invalid(text, "a finite number")
    return value


def positive_ints(count: int, separator: str, example: str) -> Callable[[str], tuple[int, ...]]:
    """A type: `count` whole numbers of at least 1 joined by `separator` (e.g. C,H,W)."""
    expected = f"{count} whole numbers of at least 1 as {example}"

    def parse(text: str) -> tuple[int, ...]:
        parts = text.lower().split(separator)
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise invalid(text, expected) from None
        if len(values) != count or min(values) < 1 or max(values) > INT32_MAX:
            raise invalid(text, expected)
        return values

    return parse


size_hw = positive_ints(2, "x", "HxW, e.g. 256x256")


def numbers(text: str) -> tuple[float, ...]:
    """A type: finite numbers separated by commas (e.g. per-channel means 104,117,123)."""
    try:
        return tuple(finite_float(p) for p in text.split(","))
    except argparse.ArgumentTypeError:
        raise invalid(text, "finite numbers separated by commas, e.g. 104,117,123") from None


def file_list(text: str) -> str:
    """A type: one or more file names separated by commas, none empty (returned as given)."""
    if not all(text.split(",")):
        raise invalid(text, "file names separated by commas, none empty")
    return text


def gpu_list(text: str) -> tuple[int, ...] | str:
    """A type: Caffe's `-gpu` value: a device number, a comma list (0,1) or "all"."""
    expected = "a GPU number, a comma list of them (0,1) or all"
    if text.strip().lower() == "all":
        return "all"
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise invalid(text, expected) from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise invalid(text, expected + ", each once and >= 0")
    return ids


def name_list(text: str) -> tuple[str, ...]:
    """A type: comma-separated names, none empty (Caffe's `-stage a,b`)."""
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise invalid(text, "names separated by commas, none empty (e.g. deploy,fast)")
    return names
