"""Helpers of the evaluation rule (evaluate.smk)."""


def evaluate_inputs(wildcards):
    """The solver, its TEST net and the database and mean file that net reads."""
    from pipeline_lib.evaluate import evaluation_inputs

    files = evaluation_inputs(MODELS[wildcards.model]["solver"])
    return {**files, "solver": files["solver"][0]}
