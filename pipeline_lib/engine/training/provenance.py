"""A training run's provenance record: what went in, what came out, where and when.

`<stem>.provenance.json` sits beside each trained model. It holds the
workflow's config section for the run, the solver and net texts as read
(and the effective solver), sha256 digests of every input and output,
package versions, the seed, the host and its BLAS, and the run's wall time
with UTC start/end timestamps. The timestamps live only here: the model,
solverstate and metrics files carry none, so reruns give the same bytes.

Inputs are digested by content as digests.py says (an LMDB by its
`data.mdb`, a LevelDB by its records).

No Snakemake imports: the rule passes its config section in as plain data.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib.core import lanes
from pipeline_lib.core.fsutil import atomic_write_bytes, sha256_file
from pipeline_lib.engine.training.digests import DigestCache, hash_input

FORMAT_VERSION = 1
# Distributions whose versions decide the bytes of a run (or its inputs' reading).
PACKAGES = ("pipeline-lib", "numpy", "protobuf", "snakemake", "pandas", "lmdb", "plyvel",
            "pillow", "h5py", "matplotlib", "cupy-cuda12x", "cupy-cuda11x", "cupy")
# Environment variables that set thread counts of BLAS / OpenMP (and so summation order).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "CUDA_VISIBLE_DEVICES")


def utc_now() -> str:
    """The current time in UTC as ISO 8601 with microseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (absent ones left out), plus Python's."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def blas_info() -> dict[str, Any]:
    """NumPy's BLAS (name, version, build config), its thread count and the run's lanes.

    A training job keeps BLAS on one thread and splits its work over lanes
    (core/threads): OpenBLAS's multi-threaded GEMM sums in another order than
    its single-threaded one, the lanes change no value's operations.
    """
    info: dict[str, Any] = {}
    try:
        import numpy as np

        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        info = {k: blas[k] for k in ("name", "version", "openblas configuration") if k in blas}
    except Exception as e:  # a record, not a requirement: say why it is missing
        info["error"] = f"{type(e).__name__}: {e}"
    info["threads"] = blas_threads()
    info["lanes"] = lanes.count()
    return info


def blas_threads() -> int | None:
    """BLAS threads in effect: from threadpoolctl when installed, else as OpenBLAS derives
    them (OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS, else the usable CPUs)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if counts:
            return int(counts[0])
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for var in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return min(int(value), cpus) if cpus else int(value)
    return cpus


def host_info() -> dict[str, Any]:
    """Host name, OS, CPU model and count, and the thread-count environment."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python_executable": sys.executable,
        "thread_environment": {v: os.environ[v] for v in THREAD_VARIABLES if v in os.environ},
    }


def _cpu_model() -> str | None:
    # OpenBLAS picks its kernels per CPU (DYNAMIC_ARCH), so the CPU is part of the record.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def source_revision(root: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The git commit of the project checkout holding pipeline_lib, and whether tracked
    files differ from it; None outside a git checkout."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], text=True,
                                capture_output=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], text=True, capture_output=True,
                                timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


@dataclass
class RunRecord:
    """Collects a run's provenance; `write` puts it beside the model as JSON."""

    solver_path: str
    config: Mapping[str, Any] | None = None
    started_at: str = field(default_factory=utc_now)
    _t0: float = field(default_factory=time.perf_counter)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def add_inputs(self, paths: Iterable[str | os.PathLike],
                   cache: DigestCache | None = None) -> None:
        """Hash input files/databases now, before training reads (or locks) them.

        A missing input is recorded as such: the layer that reads it reports the
        error, naming itself.
        """
        for path in paths:
            key = str(path)
            if key not in self.inputs:
                try:
                    self.inputs[key] = hash_input(path, cache)
                except FileNotFoundError:
                    self.inputs[key] = {"kind": "missing"}

    def add_texts(self, paths: Iterable[str | os.PathLike]) -> None:
        """Keep the text of prototxt files as read at the start of the run."""
        for path in paths:
            self.texts[str(path)] = Path(path).read_text(encoding="utf-8")

    def build(self, *, effective_solver: str, seed: int, solver_mode: str, iterations: int,
              outputs: Mapping[str, str | os.PathLike], resumed_from: str | None = None,
              stopped_early: bool = False) -> dict[str, Any]:
        """The finished record (call after the outputs are in place)."""
        return {
            "format": FORMAT_VERSION,
            "solver": self.solver_path,
            "config": dict(self.config) if self.config is not None else None,
            "seed": seed,
            "solver_mode": solver_mode,
            "iterations": iterations,
            "stopped_early": stopped_early,
            "resumed_from": resumed_from,
            "texts": self.texts,
            "effective_solver": effective_solver,
            "inputs": self.inputs,
            "outputs": {name: {"path": str(p), "sha256": sha256_file(p)}
                        for name, p in outputs.items() if Path(p).is_file()},
            "packages": package_versions(),
            "source": source_revision(),
            "blas": blas_info(),
            "host": host_info(),
            "started_at": self.started_at,
            "finished_at": utc_now(),
            "wall_seconds": round(time.perf_counter() - self._t0, 3),
        }

    def write(self, path: str | os.PathLike, **build_args: Any) -> dict[str, Any]:
        """Build the record and write it to `path` atomically; returns it."""
        record = self.build(**build_args)
        text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))
        return record


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """Load a provenance record, checking its format version."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if record.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: provenance format {record.get('format')!r}, expected "
                         f"{FORMAT_VERSION}")
    return record
