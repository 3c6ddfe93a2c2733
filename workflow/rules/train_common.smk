"""Helpers of the training rule: its config section and GPU count."""


def train_config_section(wildcards):
    """The config this run uses (kept in its provenance record; a change reruns it)."""
    return {
        "model": wildcards.model,
        "models": {wildcards.model: MODELS[wildcards.model]},
        "train": config["train"],
    }


def train_gpus(wildcards):
    """1 when the run trains on a GPU (config override, else the solver's solver_mode)."""
    mode = config["train"]["solver_mode"]
    if not mode:
        from pipeline_lib.proto.prototxt import read_solver

        solver = read_solver(MODELS[wildcards.model]["solver"])
        mode = "GPU" if solver.solver_mode == solver.SolverMode.GPU else "CPU"
    return 1 if mode == "GPU" else 0
