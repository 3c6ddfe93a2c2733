"""Snakemake script (rule train): solver prototxt -> results/<model>_iter_<N> snapshot."""

import sys

from pipeline_lib.engine.training.job import TrainingJob


def main(smk) -> None:
    job = TrainingJob.create(
        smk.input.solver,
        output_stem=smk.params.stem,
        max_iter=int(smk.wildcards.iter),
        solver_mode=smk.params.solver_mode or None,
        resume=None if smk.params.resume == "none" else smk.params.resume,
        log_path=smk.log[0],
        metrics_path=smk.output.metrics,
        provenance_path=smk.output.provenance,
        config=smk.params.config,
    )
    result = job.run()
    if result.stopped_early:
        sys.exit(f"training stopped early at iteration {result.iterations}; rerun to resume")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
