# Evaluation: results/<model>_iter_<N>_eval.json (accuracy, top-k, per class) with the
# confusion matrix as CSV and heatmap, from the model's TEST net on its test database.


rule evaluate:
    input:
        unpack(evaluate_inputs),
        weights=rules.train.output.model,
    output:
        report="results/{model}_iter_{iter}_eval.json",
        confusion="results/{model}_iter_{iter}_confusion.csv",
        heatmap=report(
            "results/{model}_iter_{iter}_confusion.png",
            caption="../report/confusion.rst",
            category="Evaluation",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "iterations": "{iter}",
                "figure": "confusion matrix",
            },
        ),
    log:
        "logs/evaluate/{model}_iter_{iter}.log",
    wildcard_constraints:
        model=model_constraint(),
        iter=COUNT_WILDCARD,
    conda:
        "../envs/pipeline.yaml"
    threads: 2
    resources:
        mem_mb=2000,
    params:
        top_k=config["evaluate"]["top_k"],
        batch_size=config["evaluate"]["batch_size"],
        solver_mode=rules.train.params.solver_mode,
    script:
        "../scripts/evaluate.py"
