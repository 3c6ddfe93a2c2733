"""Snakemake script (rule images_gather_resized): join the resized shards of a split."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.imageset import gather_resized


def main(smk) -> None:
    configure_logging(smk.log[0])
    log = logging.getLogger("gather_resized")
    try:
        # Snakemake removed any stale output before starting; replace rather than fail.
        images, skipped = gather_resized(
            list(smk.input.images), list(smk.input.listings), list(smk.input.skipped),
            smk.output.images, smk.output.listing, smk.output.skipped, overwrite=True,
        )
        log.info("%s: %d resized images from %d shards", smk.output.images, images,
                 len(smk.input.images))
        if skipped:
            log.warning("%d images were skipped; see %s", skipped, smk.output.skipped)
    except Exception:
        log.exception("gathering the shards failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
