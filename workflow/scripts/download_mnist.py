"""Snakemake script (rule download_mnist): fetch and verify the four MNIST IDX files."""

import logging
from pathlib import Path

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.mnist_sources import download_mnist


def main(smk) -> None:
    configure_logging(smk.log[0])
    outputs = [Path(p) for p in smk.output]
    dest = outputs[0].parent
    if any(p.parent != dest for p in outputs):
        raise ValueError(f"download_mnist: outputs must share one folder, got {outputs}")
    mnist_cfg = dict(smk.config["mnist"], files=smk.params.files)
    try:
        got = download_mnist(mnist_cfg, dest, smk.config.get("download"))
    except Exception:
        logging.getLogger("download_mnist").exception("download failed")
        raise
    missing = [p for p in outputs if p.name not in got]
    if missing:
        raise RuntimeError(f"download_mnist: no config entry for {missing}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
