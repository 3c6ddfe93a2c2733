"""Snakemake script (rule images_mean): the mean image of a database, as a binaryproto."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.mean import write_image_mean


def main(smk) -> None:
    configure_logging(smk.log[0])
    try:
        result = write_image_mean(smk.input[0], smk.output[0])
    except Exception:
        logging.getLogger("compute_image_mean").exception("computing the mean failed")
        raise
    means = ", ".join(f"{v:.4f}" for v in result.channel_means)
    print(f"{smk.output[0]}: mean of {result.count} images; per channel (BGR): {means}")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
