"""Regenerate caffe_pb2.py from caffe.proto (needs grpcio-tools: the 'test' extra).

    python -m pipeline_lib.proto.generate

`tests/proto/test_schema_sync.py` fails when the two drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent


def compile_proto(out_dir: Path, *extra_args: str) -> None:
    from grpc_tools import protoc

    args = ["protoc", f"-I{HERE}", f"--python_out={out_dir}", *extra_args,
            str(HERE / "caffe.proto")]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {HERE / 'caffe.proto'}")


def main() -> int:
    compile_proto(HERE)
    print(f"wrote {HERE / 'caffe_pb2.py'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
