"""Provenance records: input digests by kind, versions, host, and train()'s record."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import DATA
from test_reproducible import make_run_dir

from pipeline_lib.engine.training.digests import DigestCache, hash_input
from pipeline_lib.engine.training.job import train
from pipeline_lib.engine.training.provenance import (
    FORMAT_VERSION,
    RunRecord,
    blas_threads,
    package_versions,
    read_provenance,
)

GOLDEN = DATA / "golden"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_digest_is_sha256_of_bytes(tmp_path):
    path = tmp_path / "x.prototxt"
    path.write_bytes(b"name: 'x'\n")
    record = hash_input(path)
    assert record == {"kind": "file", "sha256": hashlib.sha256(b"name: 'x'\n").hexdigest(),
                      "size": 10}


def test_lmdb_digest_is_data_mdb_only(tmp_path):
    db = tmp_path / "db"
    shutil.copytree(GOLDEN / "caffe_train100_lmdb", db)
    record = hash_input(db)
    assert record["kind"] == "lmdb" and record["sha256"] == sha256(db / "data.mdb")
    (db / "lock.mdb").write_bytes(b"reader table changes with every open")
    assert hash_input(db)["sha256"] == record["sha256"]


def test_leveldb_digest_is_its_records_whatever_its_files(tmp_path):
    from pipeline_lib.data.db import open_db

    db = tmp_path / "db"
    shutil.copytree(GOLDEN / "caffe_train100_leveldb", db)
    files_before = {p.name: sha256(p) for p in db.iterdir()}
    record = hash_input(db)
    assert record["kind"] == "leveldb" and record["records"] == 100
    assert {p.name: sha256(p) for p in db.iterdir()} != files_before  # opening rewrote them
    assert hash_input(db) == record
    with open_db(db, "r") as reader:
        records = list(reader)
    other = tmp_path / "other"
    with open_db(other, "w", backend="leveldb") as writer:
        for key, value in records[:-1]:
            writer.put(key, value)
        writer.put(records[-1][0], records[-1][1] + b"\0")
    assert hash_input(other)["sha256"] != record["sha256"]


def test_cached_digest_rereads_a_touched_file_once(tmp_path, monkeypatch):
    from pipeline_lib.engine.training import digests

    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 1000)
    reads = []
    monkeypatch.setattr(digests, "sha256_file", lambda p: reads.append(p) or sha256(p))
    cache = DigestCache(tmp_path / "cache.json")
    first = hash_input(path, cache)
    cache.save()
    again = DigestCache(tmp_path / "cache.json")
    assert hash_input(path, again) == first and len(reads) == 1  # unchanged: not read
    os.utime(path, ns=(1, 1))  # touched: read once more, the same digest
    assert hash_input(path, again) == first and len(reads) == 2
    assert hash_input(path, again) == first and len(reads) == 2
    path.write_bytes(b"y" * 1000)
    assert hash_input(path, again)["sha256"] != first["sha256"]


def test_missing_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        hash_input(tmp_path / "nope")
    rec = RunRecord("s.prototxt")
    rec.add_inputs([tmp_path / "nope"])  # left to the layer that reads it to report
    assert rec.inputs == {str(tmp_path / "nope"): {"kind": "missing"}}


def test_package_versions_name_the_ones_that_decide_the_bytes():
    versions = package_versions()
    for name in ("python", "numpy", "protobuf", "snakemake", "pipeline-lib"):
        assert versions.get(name), name


def test_blas_threads_follow_openblas_precedence(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # the environment path only
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert blas_threads() == 1
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert blas_threads() == min(2, len(os.sched_getaffinity(0)))


def test_record_write_is_atomic_json_with_outputs_and_times(tmp_path):
    out = tmp_path / "m.caffemodel"
    out.write_bytes(b"weights")
    rec = RunRecord("s.prototxt", config={"train": {"resume": "auto"}})
    record = rec.write(tmp_path / "p.json", effective_solver="base_lr: 0.01\n", seed=3,
                       solver_mode="CPU", iterations=5, outputs={"caffemodel": out})
    assert read_provenance(tmp_path / "p.json") == json.loads(json.dumps(record))
    assert record["outputs"]["caffemodel"]["sha256"] == sha256(out)
    assert record["config"] == {"train": {"resume": "auto"}}
    start = dt.datetime.fromisoformat(record["started_at"])
    end = dt.datetime.fromisoformat(record["finished_at"])
    assert start.tzinfo is not None and start <= end and record["wall_seconds"] >= 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_other_format_version_is_refused(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match="provenance format"):
        read_provenance(path)


def test_train_writes_the_record_beside_the_model(tmp_path, monkeypatch):
    run = make_run_dir(tmp_path / "run")
    monkeypatch.chdir(run)
    config = {"model": "small", "models": {"small": {"solver": "solver.prototxt"}}}
    result = train("solver.prototxt", output_stem="results/small_iter_30", max_iter=30,
                   log_path="train.log", config=config)
    assert result.provenance == Path("results/small_iter_30.provenance.json")
    record = read_provenance(result.provenance)
    assert record["config"] == config and record["seed"] == 7
    assert record["iterations"] == 30 and record["solver_mode"] == "CPU"
    assert record["texts"]["solver.prototxt"] == (run / "solver.prototxt").read_text()
    assert record["texts"]["small.prototxt"] == (run / "small.prototxt").read_text()
    assert "max_iter: 30" in record["effective_solver"]
    assert "net_param" in record["effective_solver"]
    assert set(record["inputs"]) == {"solver.prototxt", "small.prototxt", "db/train_lmdb",
                                     "db/test_lmdb"}
    assert record["inputs"]["db/train_lmdb"]["sha256"] == sha256(run / "db/train_lmdb/data.mdb")
    for name, suffix in (("caffemodel", ".caffemodel"), ("solverstate", ".solverstate"),
                         ("solver", ".solver.prototxt")):
        path = run / f"results/small_iter_30{suffix}"
        assert record["outputs"][name] == {"path": f"results/small_iter_30{suffix}",
                                           "sha256": sha256(path)}
    assert record["outputs"]["metrics"]["path"] == "results/small_iter_30_metrics.csv"
    assert record["host"]["hostname"] and record["packages"]["numpy"]
    assert record["blas"]["threads"] >= 1


def test_train_without_output_stem_writes_no_record(tmp_path, monkeypatch):
    run = make_run_dir(tmp_path / "run")
    monkeypatch.chdir(run)
    result = train("solver.prototxt", max_iter=5, log_path="train.log")
    assert result.provenance is None
    assert not list(run.glob("*.provenance.json"))


def test_train_runs_with_the_jobs_blas_threads(tmp_path, monkeypatch):
    """`threads` (the rule's, under Snakemake) is the BLAS thread count the run has and
    records; the process's own count is back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    run = make_run_dir(tmp_path / "run")
    monkeypatch.chdir(run)
    before = blas_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        result = train("solver.prototxt", output_stem="results/small_iter_5", max_iter=5,
                       log_path="train.log", threads=1)
        assert blas_threads() == min(2, before)
    assert read_provenance(result.provenance)["blas"]["threads"] == 1
