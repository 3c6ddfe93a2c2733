"""Snakemake script (rule caffenet_time): per-layer forward/backward timing of a net."""

import logging

from pipeline_lib.api import load_net
from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.core.glog import configure_logging
from pipeline_lib.core.threads import compute_threads
from pipeline_lib.engine.timing import time_net
from pipeline_lib.proto import caffe_pb2


def main(smk) -> None:
    configure_logging(smk.log[0])
    log = logging.getLogger("time_net")
    try:
        # layers that read images (Data, ImageData) give way to random data of this size
        net = load_net(smk.input[0], None, caffe_pb2.TRAIN, batch_size=int(smk.wildcards.batch),
                       dummy_data=(3, 227, 227))
        try:
            with compute_threads(smk.threads):
                timing = time_net(net, iterations=int(smk.params.iterations))
        finally:
            net.close()
        table = timing.table()
        log.info("%s, batch %s:\n%s", smk.input[0], smk.wildcards.batch, table)
        atomic_write_bytes(smk.output[0], (table + "\n").encode("utf-8"))
    except Exception:
        log.exception("timing failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
