"""Caffe-compatible nets, solvers and data tools on NumPy (CPU) and CuPy (GPU)."""

__version__ = "0.1.0"
