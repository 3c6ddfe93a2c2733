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
    from pipeline_lib.core.backend import Device
    from pipeline_lib.engine.training.device import run_device

    solver = MODELS[wildcards.model]["solver"]
    return int(run_device(config["train"]["solver_mode"], solver) is Device.GPU)
