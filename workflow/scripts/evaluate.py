"""Snakemake script (rule evaluate): trained weights -> eval JSON, confusion CSV and heatmap."""

import logging
from pathlib import Path

from pipeline_lib.core.glog import configure_logging
from pipeline_lib.core.threads import compute_threads
from pipeline_lib.engine.training.device import run_device
from pipeline_lib.evaluate import evaluate_solver, write_reports

# The workflow's folder (Snakemake sets __file__ to this script's own path).
WORKFLOW_DIR = Path(__file__).resolve().parents[2]


def main(smk) -> None:
    configure_logging(smk.log[0])
    log = logging.getLogger("evaluate")
    try:
        with compute_threads(smk.threads):
            evaluation, info = evaluate_solver(
                smk.input.solver,
                smk.input.weights,
                top_k=smk.params.top_k,
                batch_size=smk.params.batch_size or None,
                device=run_device(smk.params.solver_mode, smk.input.solver),
                workflow_dir=WORKFLOW_DIR,
            )
        model, iters = smk.wildcards.model, int(smk.wildcards.iter)
        write_reports(
            evaluation,
            smk.output.report,
            smk.output.confusion,
            smk.output.heatmap,
            title=f"{model} after {iters} iterations",
            model=model,
            iterations=iters,
            weights=smk.input.weights,
            **info,
        )
        log.info(
            "%s: accuracy %.4f over %d records, loss %s",
            smk.input.weights,
            evaluation.accuracy,
            evaluation.count,
            evaluation.loss,
        )
    except Exception:
        log.exception("evaluation failed")
        raise


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 - injected by Snakemake's script preamble
