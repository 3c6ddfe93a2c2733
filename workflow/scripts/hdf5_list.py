"""Snakemake script (rule hdf5_list): the list of .h5 files that HDF5Data reads."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.hdf5_list import write_hdf5_list


def main(smk) -> None:
    configure_logging(smk.log[0])
    where = f"config datasets.{smk.wildcards.dataset}.splits.{smk.wildcards.split}"
    try:
        count = write_hdf5_list(list(smk.input), smk.output[0], where)
    except Exception:
        logging.getLogger("hdf5_list").exception("writing the list failed")
        raise
    logging.getLogger("hdf5_list").info("%s: %d HDF5 files", smk.output[0], count)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
