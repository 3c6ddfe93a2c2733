"""`python -m pipeline_lib.data`'s parsing (core/cli_args owns it, as for pcaffe): a bad
option value is one line on stderr and exit 1, and `--debug` works before or after the
command. In-process; the subprocess cases are in tests/reliability/test_data_inputs.py."""

from __future__ import annotations

import pytest

from pipeline_lib.data.__main__ import build_parser, main
from pipeline_lib.data.db import DatabaseError


@pytest.mark.parametrize("args, line", [
    (["convert-imageset", "r", "l", "o", "--workers", "257"],
     "python -m pipeline_lib.data convert-imageset: error: argument --workers: got '257'; "
     "expected at most 256 (see python -m pipeline_lib.data convert-imageset --help)"),
    (["convert-imageset", "r", "l", "o", "--resize", "16x0"],
     "python -m pipeline_lib.data convert-imageset: error: argument --resize: got '16x0'; "
     "expected 2 whole numbers of at least 1 as HxW, e.g. 256x256 "
     "(see python -m pipeline_lib.data convert-imageset --help)"),
    (["inspect", "db", "--show", "x"],
     "python -m pipeline_lib.data inspect: error: argument --show: got 'x'; expected a whole "
     "number of at least 0 (see python -m pipeline_lib.data inspect --help)"),
])
def test_a_bad_option_value_is_one_line_and_exit_1(capsys, args, line):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    assert capsys.readouterr().err == line + "\n"


def test_the_values_parsed():
    args = build_parser().parse_args(["convert-imageset", "r", "l", "o", "--resize", "32X24",
                                      "--workers", "256", "--seed", "7"])
    assert (args.resize.height, args.resize.width) == (32, 24)
    assert (args.workers, args.seed, args.debug) == (256, 7, False)
    assert build_parser().parse_args(["inspect", "db"]).show == 3


@pytest.mark.parametrize("args", [["--debug", "inspect", "nodb"], ["inspect", "--debug", "nodb"]])
def test_debug_before_or_after_the_command_raises(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatabaseError, match="nodb: no such database"):
        main(args)


def test_without_debug_an_error_is_exit_1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "nodb"]) == 1
