"""`from pipeline_lib.caffe.proto import caffe_pb2`, as pycaffe's `caffe.proto`."""

from pipeline_lib.proto import caffe_pb2

__all__ = ["caffe_pb2"]
