"""Snakemake script (rule train): solver prototxt -> results/<model>_iter_<N> snapshot."""

import sys
from pathlib import Path


def main(smk) -> None:
    from pipeline_lib.engine.training.job import TrainingJob

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
    smk = snakemake  # noqa: F821 - injected by Snakemake's script preamble
    sys.path.insert(0, str(Path(smk.scriptdir).resolve().parents[1]))  # the repo root
    main(smk)
