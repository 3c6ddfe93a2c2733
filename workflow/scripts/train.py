"""Snakemake script (rule train): solver prototxt -> results/<model>_iter_<N> snapshot."""

import sys
from pathlib import Path

from pipeline_lib.engine.training.job import TrainingJob

# The workflow's folder (Snakemake sets __file__ to this script's own path): where the
# solver's nets are found when the working directory has no copy (model_files.locate).
WORKFLOW_DIR = Path(__file__).resolve().parents[2]


def main(smk) -> None:
    job = TrainingJob.create(
        smk.input.solver,
        output_stem=smk.params.stem,
        max_iter=int(smk.wildcards.iter),
        overrides=smk.params.config["models"][smk.wildcards.model].get("overrides"),
        weights=",".join(smk.input.weights),
        workflow_dir=WORKFLOW_DIR,
        solver_mode=smk.params.solver_mode or None,
        resume=None if smk.params.resume == "none" else smk.params.resume,
        log_path=smk.log[0],
        metrics_path=smk.output.metrics,
        provenance_path=smk.output.provenance,
        config=smk.params.config,
        threads=smk.threads,  # lanes for the step's work (the bits do not depend on them)
    )
    result = job.run()
    if result.stopped_early:
        # Nothing of the rule's outputs exists yet, so Snakemake reruns the job, which resumes.
        sys.exit(f"training stopped at iteration {result.iterations} on request (a signal); "
                 f"state saved to {result.solverstate}; run the same snakemake command again "
                 "to resume from it")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
