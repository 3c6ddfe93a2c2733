"""Snakemake script (rule convert_cifar): CIFAR-10 binary batches -> LMDB/LevelDB of Datums."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.cifar import convert_cifar


def main(smk) -> None:
    configure_logging(smk.log[0])
    try:
        # Snakemake removed any stale output before starting; replace rather than fail.
        convert_cifar(list(smk.input), smk.output[0], backend=smk.wildcards.backend,
                      overwrite=True)
    except Exception:
        logging.getLogger("convert_cifar").exception("conversion failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
