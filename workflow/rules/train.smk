# Training: results/<model>_iter_<N>.caffemodel for every model in config["models"].


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


rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/{model}_iter_{iter}.caffemodel",
        state="results/{model}_iter_{iter}.solverstate",
        solver="results/{model}_iter_{iter}.solver.prototxt",
        metrics="results/{model}_iter_{iter}_metrics.csv",
        provenance="results/{model}_iter_{iter}.provenance.json",
    log:
        "logs/train/{model}_iter_{iter}.log",
    wildcard_constraints:
        model=model_constraint(),
        iter=r"\d+",
    conda:
        "../envs/pipeline.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        gpu=train_gpus,
    params:
        stem=train_output_stem,
        resume=config["train"]["resume"],
        solver_mode=config["train"]["solver_mode"],
        config=train_config_section,
    script:
        "../scripts/train.py"
