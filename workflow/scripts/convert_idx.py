"""Snakemake script (rule convert_idx): IDX images + labels -> LMDB/LevelDB of Datums."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.convert import convert_mnist


def main(smk) -> None:
    configure_logging(smk.log[0])
    try:
        # Snakemake removed any stale output before starting; replace rather than fail.
        convert_mnist(
            smk.input.images,
            smk.input.labels,
            smk.output[0],
            backend=smk.wildcards.backend,
            overwrite=True,
        )
    except Exception:
        logging.getLogger("convert_mnist").exception("conversion failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
