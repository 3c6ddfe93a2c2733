"""Batch work over threads: slices cover the batch once, and results do not depend on them."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from google.protobuf import text_format

from pipeline_lib import batch_threads
from pipeline_lib.net import Net
from pipeline_lib.proto import caffe_pb2

CONV_NET = """
name: "convnet"
layer { name: "in" type: "Input" top: "x" top: "y"
        input_param { shape { dim: 24 dim: 3 dim: 10 dim: 10 } shape { dim: 24 } } }
layer { name: "conv1" type: "Convolution" bottom: "x" top: "c1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1
                            weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "c1" top: "p1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "p1" top: "c2"
        convolution_param { num_output: 6 kernel_size: 2 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "c2" top: "c2" }
layer { name: "pool2" type: "Pooling" bottom: "c2" top: "p2"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "p2" top: "out"
        inner_product_param { num_output: 5 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "out" bottom: "y" top: "loss" }
"""


@pytest.mark.parametrize("n, threads", [(1, 4), (7, 2), (8, 2), (64, 3), (10, 16)])
def test_slices_cover_the_batch_once(monkeypatch, n, threads):
    monkeypatch.setenv("PIPELINE_THREADS", str(threads))
    seen = np.zeros(n, int)
    calls = []

    def work(a, b):
        seen[a:b] += 1
        calls.append((a, b, threading.current_thread() is threading.main_thread()))

    batch_threads.over_batch(np, n, work)
    assert (seen == 1).all()
    assert len(calls) == max(1, min(threads, n // batch_threads.MIN_PER_SLICE))
    assert sum(main for *_, main in calls) == 1  # the caller does one slice itself
    assert all(b - a >= min(n, batch_threads.MIN_PER_SLICE) for a, b, _ in calls)


def test_errors_in_a_slice_reach_the_caller(monkeypatch):
    monkeypatch.setenv("PIPELINE_THREADS", "2")

    def work(a, b):
        if a > 0:
            raise ValueError("slice failed")

    with pytest.raises(ValueError, match="slice failed"):
        batch_threads.over_batch(np, 16, work)


def test_thread_count_follows_the_environment(monkeypatch):
    for name in ("PIPELINE_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert batch_threads.thread_count() == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # what Snakemake sets for a job
    assert batch_threads.thread_count() == 2
    monkeypatch.setenv("PIPELINE_THREADS", "5")
    assert batch_threads.thread_count() == 5
    monkeypatch.setenv("PIPELINE_THREADS", "two")
    with pytest.raises(ValueError, match="PIPELINE_THREADS must be a whole number"):
        batch_threads.thread_count()


def run_net(threads: int, monkeypatch):
    monkeypatch.setenv("PIPELINE_THREADS", str(threads))
    net = Net(text_format.Parse(CONV_NET, caffe_pb2.NetParameter()),
              rng=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    net.blobs["x"].data[...] = rng.standard_normal(net.blobs["x"].shape)
    net.blobs["y"].data[...] = rng.integers(0, 5, 24)
    net.clear_param_diffs()
    loss = net.forward_backward()
    return loss, [p.diff.copy() for p in net.learnable_params], net.blobs["x"].diff.copy()


def test_results_are_bit_identical_for_any_thread_count(monkeypatch):
    loss1, diffs1, dx1 = run_net(1, monkeypatch)
    for threads in (2, 3):
        loss, diffs, dx = run_net(threads, monkeypatch)
        assert loss == loss1
        for a, b in zip(diffs, diffs1):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(dx, dx1)
