"""Snakemake script (rule images_synsets): synset_words.txt from the train class folders."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.listing import synsets_from_folders, write_synsets


def main(smk) -> None:
    configure_logging(smk.log[0])
    log = logging.getLogger("make_synsets")
    try:
        synsets = synsets_from_folders(smk.input.root)
        write_synsets(synsets, smk.output[0])
        log.info("%s: %d synsets from the folders of %s", smk.output[0], len(synsets),
                 smk.input.root)
    except Exception:
        log.exception("writing the synsets failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
