"""Caffe's LeNet-on-MNIST and ImageNet tutorials as a Snakemake pipeline."""

from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/mnist.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/imagenet.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        mnist_databases(),


onerror:
    # SLURM jobs killed for memory or refused for their partition/account: say so plainly.
    import sys
    from pipeline_lib.slurm_failures import explain_failures

    for line in explain_failures([log] if isinstance(log, str) else log):
        print(line, file=sys.stderr)
