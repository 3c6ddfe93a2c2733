"""Caffe's LeNet-on-MNIST and ImageNet tutorials as a Snakemake pipeline."""

from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/time.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        mnist_databases(),
