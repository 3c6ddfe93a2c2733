"""Snakemake script (rule images_listing): a split's listing from its class-per-folder tree."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.listing import read_synsets, scan_class_tree, write_listing


def main(smk) -> None:
    configure_logging(smk.log[0])
    log = logging.getLogger("make_listing")
    try:
        synsets = read_synsets(smk.input.synsets)
        entries = scan_class_tree(smk.input.root, synsets)
        write_listing(entries, smk.output[0])
        classes = len({e.label for e in entries})
        log.info("%s: %d images of %d classes (of %d synsets) under %s", smk.output[0],
                 len(entries), classes, len(synsets), smk.input.root)
    except Exception:
        log.exception("writing the listing failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
