# Sweeps: results/sweeps/<sweep>/summary.csv (one row per point of the grid) and
# comparison.png, from one training per point (rule sweep_train in train.smk).


rule sweep_summary:
    input:
        metrics=lambda wildcards: sweep_runs(wildcards, "_metrics.csv"),
        provenance=lambda wildcards: sweep_runs(wildcards, ".provenance.json"),
    output:
        summary="results/sweeps/{sweep}/summary.csv",
        plot=report(
            "results/sweeps/{sweep}/comparison.png",
            caption="../report/sweep.rst",
            category="Sweeps",
            labels={"sweep": "{sweep}", "figure": "comparison"},
        ),
    log:
        "logs/sweeps/{sweep}.log",
    wildcard_constraints:
        sweep=sweep_constraint(),
    conda:
        "../envs/pipeline.yaml"
    params:
        points=sweep_points,
    script:
        "../scripts/sweep_summary.py"
