"""Helpers for the fault-injection tests: run the command lines as a user does, check what
they print, and record it.

Every fault is tried through a command line in a subprocess (`pcaffe`, i.e.
`python -m pipeline_lib.cli`, or `python -m pipeline_lib.data`), so a test
sees exactly what a user sees: the exit status and the last line on stderr.
With RELIABILITY_TABLE=<file> set, each case's message is appended to that
file as a JSON line (docs/reliability.md's table is made from it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from small_net import NET  # tests/ is on sys.path (tests/conftest.py)

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"



SOLVER = """
net: "small.prototxt"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.0005 lr_policy: "inv" gamma: 0.0001 power: 0.75
display: 20 max_iter: 60 test_iter: 2 test_interval: 30 snapshot: 20 random_seed: 7
snapshot_prefix: "small" solver_mode: CPU
"""

# Same bytes from run to run: runs without `threads` leave BLAS its own threads (core/threads).
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1",
       "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def make_run_dir(root: Path, solver_text: str = SOLVER, net_text: str = NET) -> Path:
    """A folder with solver.prototxt, small.prototxt and its own copies of a 100-image LMDB."""
    root.mkdir(parents=True)
    (root / "solver.prototxt").write_text(solver_text)
    (root / "small.prototxt").write_text(net_text)
    for split in ("train", "test"):  # a copy each: LMDB opens an environment once per process
        shutil.copytree(GOLDEN / "caffe_train100_lmdb", root / "db" / f"{split}_lmdb")
    return root


def solver_with(run: Path, name: str, **fields: object) -> str:
    """Write a copy of run's solver with `fields` replaced (or added); return its file name."""
    text = (run / "solver.prototxt").read_text()
    for key, value in fields.items():
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        text, n = re.subn(rf"\b{key}: \S+", f"{key}: {shown}", text)
        if not n:
            text += f"\n{key}: {shown}\n"
    (run / name).write_text(text)
    return name


def _run(module: str, args, cwd: Path, timeout: float, env: dict | None
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                          env=env or ENV, capture_output=True, text=True, timeout=timeout,
                          check=False)


def pcaffe(*args, cwd: Path, timeout: float = 180, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    """`pcaffe ARGS` in `cwd`."""
    return _run("pipeline_lib.cli", args, cwd, timeout, env)


def data_cli(*args, cwd: Path, timeout: float = 180, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    """`python -m pipeline_lib.data ARGS` in `cwd`."""
    return _run("pipeline_lib.data", args, cwd, timeout, env)


def start_pcaffe(*args, cwd: Path, stderr_path: Path) -> subprocess.Popen:
    """`pcaffe ARGS` in the background, stderr into a file (to watch the log)."""
    with open(stderr_path, "w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "pipeline_lib.cli", *map(str, args)],
                                cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=err, text=True)


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until `text` appears in the file `path` (fail if `proc` ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {text!r}:\n"
                                 + path.read_text(errors="replace")[-3000:])
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {text!r} in {path}")


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def record(case: str, shown: str, exit_status: int) -> None:
    """Append a case and what the user saw to $RELIABILITY_TABLE (when set)."""
    table = os.environ.get("RELIABILITY_TABLE")
    if table:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
        row = {"case": case, "exit": exit_status, "shown": shown, "test": test}
        with open(table, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ERROR pipeline_lib\.data: ")


def clean_failure(proc: subprocess.CompletedProcess, case: str, *patterns: str) -> str:
    """Assert a one-message failure: exit 1, no traceback, the error message (last on
    stderr) matching each pattern. Returns it (the data CLI's log prefix removed, lines
    joined) and records it."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines)
              if _LOG_PREFIX.match(line) or line.startswith("pcaffe")]
    # the message: its first line and any continuation lines (e.g. one per download source)
    message = lines[starts[-1]:] if starts else lines[-1:]
    shown = _LOG_PREFIX.sub("", " ".join(line.strip() for line in message))
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for pattern in patterns:
        assert re.search(pattern, shown), f"{pattern!r} not in {shown!r}"
    record(case, shown, proc.returncode)
    return shown


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(root: Path) -> set[str]:
    """Every path under `root`, relative, as a set (to compare before and after)."""
    return {p.relative_to(root).as_posix() for p in Path(root).rglob("*")}
