# Learning curves and final scores of a training run, for `snakemake --report`.


rule plot_curves:
    input:
        metrics="results/{model}_iter_{iter}_metrics.csv",
    output:
        curves=report(
            "results/{model}_iter_{iter}_curves.png",
            caption="../report/curves.rst",
            category="Training",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "iterations": "{iter}",
                "figure": "learning curves",
            },
        ),
        scores="results/{model}_iter_{iter}_final_metrics.json",
        table=report(
            "results/{model}_iter_{iter}_final_metrics.html",
            caption="../report/final_metrics.rst",
            category="Training",
            subcategory="{model}",
            labels={
                "model": "{model}",
                "iterations": "{iter}",
                "figure": "final metrics",
            },
        ),
    log:
        "logs/plot_curves/{model}_iter_{iter}.log",
    wildcard_constraints:
        model=model_constraint(),
        iter=COUNT_WILDCARD,
    conda:
        "../envs/pipeline.yaml"
    params:
        smoothing=config["plots"]["smoothing"],
    script:
        "../scripts/plot_curves.py"
