"""Snakemake script (rule imagenet_synsets): synset_words.txt from the train class folders."""

import logging
import sys
from pathlib import Path


def main(smk) -> None:
    from pipeline_lib.core.progress import configure_logging
    from pipeline_lib.data.listing import synsets_from_folders, write_synsets

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
    smk = snakemake  # noqa: F821 - injected by Snakemake's script preamble
    sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1]))  # the repo root
    main(smk)
