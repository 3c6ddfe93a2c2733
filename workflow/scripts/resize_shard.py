"""Snakemake script (rule images_resize_shard): resize one shard of a split's listing."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.images import ResizeSpec
from pipeline_lib.data.imageset import (
    parse_shard_name,
    resize_imageset,
    shard,
    write_skipped_report,
)
from pipeline_lib.data.listing import read_listing, read_synsets, write_listing


def main(smk) -> None:
    configure_logging(smk.log[0])
    log = logging.getLogger("resize_shard")
    try:
        index, count = parse_shard_name(smk.wildcards.scatteritem)
        synsets = read_synsets(smk.input.synsets)
        entries = read_listing(smk.input.listing, len(synsets))
        part = shard(entries, index, count)
        r = smk.params.resize
        spec = ResizeSpec(int(r["height"]), int(r["width"]), r["resample"], bool(r["draft"]))
        log.info("shard %d of %d: %d of the %d images of %s, to %dx%d (%s)", index, count,
                 len(part), len(entries), smk.input.listing, spec.width, spec.height,
                 spec.resample)
        done, skipped = resize_imageset(
            smk.input.root, part, smk.output.images, spec, gray=bool(smk.params.gray),
            jpeg_quality=int(r["jpeg_quality"]), on_error=smk.params.on_error,
            workers=smk.threads, where=smk.input.listing,
        )
        write_listing(done, smk.output.listing)
        write_skipped_report(skipped, smk.output.skipped)
        log.info("resized %d images, skipped %d", len(done), len(skipped))
    except Exception:
        log.exception("resizing failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
