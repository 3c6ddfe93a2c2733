# Training: results/<model>_iter_<N>.caffemodel for every model in config["models"], and
# results/sweeps/<sweep>/<point>/<model>_iter_<N>.caffemodel for each point of a sweep.


rule train:
    input:
        unpack(train_inputs),
    output:
        model="results/{model}_iter_{iter}.caffemodel",
        state="results/{model}_iter_{iter}.solverstate",
        solver="results/{model}_iter_{iter}.solver.prototxt",
        metrics="results/{model}_iter_{iter}_metrics.csv",
        provenance=report(
            "results/{model}_iter_{iter}.provenance.json",
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"model": "{model}", "iterations": "{iter}"},
        ),
    log:
        "logs/train/{model}_iter_{iter}.log",
    wildcard_constraints:
        model=model_constraint(),
        iter=COUNT_WILDCARD,
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


# One point of a sweep: the model with the point's parameters added to its overrides.
use rule train as sweep_train with:
    output:
        model="results/sweeps/{sweep}/{point}/{model}_iter_{iter}.caffemodel",
        state="results/sweeps/{sweep}/{point}/{model}_iter_{iter}.solverstate",
        solver="results/sweeps/{sweep}/{point}/{model}_iter_{iter}.solver.prototxt",
        metrics="results/sweeps/{sweep}/{point}/{model}_iter_{iter}_metrics.csv",
        provenance="results/sweeps/{sweep}/{point}/{model}_iter_{iter}.provenance.json",
    log:
        "logs/train/sweeps/{sweep}/{point}/{model}_iter_{iter}.log",
    wildcard_constraints:
        model=model_constraint(),
        iter=COUNT_WILDCARD,
        sweep=sweep_constraint(),
        point=POINT_WILDCARD,
