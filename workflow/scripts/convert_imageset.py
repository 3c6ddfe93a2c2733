"""Snakemake script (rule images_convert): a listing of images to a database of Datums."""

import logging

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.data.imageset import ConvertOptions, convert_imageset, write_skipped_report
from pipeline_lib.data.listing import read_synsets


def main(smk) -> None:
    configure_logging(smk.log[0])
    log = logging.getLogger("convert_imageset")
    try:
        c = smk.params.convert
        options = ConvertOptions(
            backend=smk.wildcards.backend, shuffle=bool(c["shuffle"]), seed=int(c["seed"]),
            gray=bool(c["gray"]), encoded=bool(c["encoded"]), encode_type=c["encode_type"],
            check_size=bool(c["check_size"]), on_error=smk.params.on_error,
            workers=smk.threads,
        )
        synsets = read_synsets(smk.input.synsets)
        # Snakemake removed any stale output before starting; replace rather than fail.
        result = convert_imageset(smk.input.root, smk.input.listing, smk.output.db, options,
                                  num_classes=len(synsets), overwrite=True)
        write_skipped_report(result.skipped, smk.output.skipped)
        log.info("wrote %d records to %s (%s); %d skipped", result.count, smk.output.db,
                 options.backend, len(result.skipped))
    except Exception:
        log.exception("conversion failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
