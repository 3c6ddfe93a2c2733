"""Progress: a redrawn line on a terminal, a few log lines elsewhere."""

import io
import logging

from pipeline_lib.core.progress import Progress, format_amount


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_non_terminal_logs_quarters_and_done(caplog):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="t"):
        with Progress(
            "writing", total=100, unit="records", logger=logging.getLogger("t"), stream=stream
        ) as progress:
            for _ in range(10):
                progress.update(10)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == [
        "writing: 25% (30 of 100 records)",
        "writing: 50% (50 of 100 records)",
        "writing: 75% (80 of 100 records)",
    ]
    assert messages[3].startswith("writing: done, 100 records in")
    assert stream.getvalue() == ""


def test_terminal_redraws_one_line(caplog):
    stream = _Tty()
    with caplog.at_level(logging.INFO, logger="t"):
        with Progress(
            "get",
            total=2 << 20,
            unit="B",
            logger=logging.getLogger("t"),
            stream=stream,
            min_interval=0,
        ) as progress:
            progress.update(1 << 20)
    text = stream.getvalue()
    assert "\r\x1b[Kget:  50.0% 1.0 MiB of 2.0 MiB" in text and "\n" not in text
    assert [r.getMessage() for r in caplog.records][0].startswith("get: done, 1.0 MiB")


def test_failure_logs_no_done_line(caplog):
    with caplog.at_level(logging.INFO, logger="t"):
        try:
            with Progress("x", total=4, logger=logging.getLogger("t"), stream=io.StringIO()):
                raise ValueError
        except ValueError:
            pass
    assert caplog.records == []


def test_format_amount():
    assert format_amount(1536, "B") == "1.5 KiB"
    assert format_amount(60000, "records") == "60,000 records"
