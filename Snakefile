"""Caffe's LeNet-on-MNIST and ImageNet tutorials as a Snakemake pipeline.

Deployable: `snakemake -s <repo>/Snakefile -d <dir>`, or `module` + `use rule *`.
Files shipped with the workflow (models/, config.yaml) are looked for in the
working directory first, then beside this Snakefile; data and results are the
working directory's.
"""

import os
from pathlib import Path

from snakemake.utils import min_version

min_version("8.0")

# Where this workflow is installed (for a module too: the folder of this file).
WORKFLOW_DIR = Path(workflow.current_basedir).resolve()
# workflow/envs/pipeline.yaml installs the package from here (pip expands the variable).
os.environ.update(PIPELINE_LIB_SOURCE=str(WORKFLOW_DIR))


# config.yaml of the working directory, else the workflow's own. With --configfile and no
# config.yaml here, the given files alone (the shipped one is not merged under them).
SHIPPED_CONFIG = not Path("config.yaml").exists() and not workflow.overwrite_configfiles


configfile: WORKFLOW_DIR / "config.yaml" if SHIPPED_CONFIG else "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/time.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/sweeps.smk"


rule all:
    input:
        config["targets"],


onerror:
    # SLURM jobs killed for memory or refused for their partition/account: say so plainly.
    import sys
    from pipeline_lib.slurm_failures import explain_failures

    for line in explain_failures([log] if isinstance(log, str) else log):
        print(line, file=sys.stderr)
