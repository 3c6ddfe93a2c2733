"""Snakemake script (rule fetch_idx): fetch and verify the four IDX files of a dataset."""

import logging
from pathlib import Path

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.mnist_sources import fetch_idx_dataset


def main(smk) -> None:
    configure_logging(smk.log[0])
    outputs = [Path(p) for p in smk.output]
    dest = outputs[0].parent
    if any(p.parent != dest for p in outputs):
        raise ValueError(f"fetch_idx: outputs must share one folder, got {outputs}")
    name = smk.wildcards.dataset
    entry = dict(smk.config["datasets"][name], files=smk.params.files)
    try:
        got = fetch_idx_dataset(entry, dest, smk.config.get("download"), name=name,
                                lock_path=smk.params.lock)
    except Exception:
        logging.getLogger("fetch_idx").exception("fetching %s failed", name)
        raise
    missing = [p for p in outputs if p.name not in got]
    if missing:
        raise RuntimeError(f"fetch_idx: no config entry for {missing}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
