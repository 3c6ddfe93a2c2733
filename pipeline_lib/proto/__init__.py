"""Caffe's protobuf schema (ours, with Caffe's field numbers) and prototxt I/O."""
