"""Print the Markdown table of docs/reliability.md from a run of the reliability tests.

    RELIABILITY_TABLE=/tmp/cases.jsonl python -m pytest tests/reliability
    python tests/reliability/make_table.py /tmp/cases.jsonl
"""

from __future__ import annotations

import json
import re
import sys

TMP = re.compile(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/ ']+/")


def main(path: str) -> None:
    rows: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            rows.setdefault(row["case"], row)  # first sighting of each case
    print("| # | Fault or bad input | What the user sees | Exit | Test |")
    print("|---|---|---|---|---|")
    for i, row in enumerate(rows.values(), start=1):
        shown = TMP.sub("/tmp/…/", row["shown"]).replace("|", "\\|")
        test = row["test"].replace("tests/reliability/", "").split("[")[0]
        case = TMP.sub("/tmp/…/", row["case"]).replace("|", "\\|")
        print(f"| {i} | {case} | `` {shown} `` | {row['exit']} | `{test}` |")


if __name__ == "__main__":
    main(sys.argv[1])
