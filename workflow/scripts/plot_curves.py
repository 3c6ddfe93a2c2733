"""Snakemake script (rule plot_curves): metrics CSV -> learning-curve PNG and final scores."""

from pipeline_lib.plots import plot_learning_curves, write_final_metrics


def main(smk) -> None:
    run = f"{smk.wildcards.model}, {smk.wildcards.iter} iterations"
    with open(smk.log[0], "w") as log:
        plot_learning_curves(smk.input.metrics, smk.output.curves,
                             title=f"Learning curves: {run}", smoothing=smk.params.smoothing)
        scores = write_final_metrics(smk.input.metrics, smk.output.scores, smk.output.table,
                                     title=f"Final metrics: {run}")
        print(f"{smk.output.curves}: written; final scores {scores}", file=log)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
