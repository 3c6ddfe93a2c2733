"""Snakemake script (rule sweep_summary): the points' metrics -> summary CSV and plot."""

from pipeline_lib.sweeps import write_summary


def main(smk) -> None:
    table = write_summary(smk.params.points, smk.input.metrics, smk.input.provenance,
                          smk.output.summary, smk.output.plot,
                          title=f"Sweep {smk.wildcards.sweep}")
    with open(smk.log[0], "w") as log:
        print(table.to_string(index=False), file=log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
