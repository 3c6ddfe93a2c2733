"""SLURM jobs killed for memory (named with rule, job id and limit) or refused for their
partition or account, found in the Snakemake and SLURM logs. The log lines are those that
Snakemake 9, the SLURM executor plugin 2.8 and slurmstepd 22.05 wrote on the test cluster
(tools/slurm-test-cluster.sh); the cgroup line is slurmstepd's task/cgroup wording."""

from __future__ import annotations

from pipeline_lib.slurm_failures import (
    FailedJob,
    explain_failures,
    failed_jobs,
    memory_failure,
)

CHECK = "(check log file(s) for error details)"
SNAKEMAKE_LOG = """\
Job 0 has been submitted with SLURM jobid 7 (log: {dir}/rule_train/big_2/7.log).
[Sun Nov 29 14:24:56 2026]
Error in rule train:
    message: SLURM-job '7' failed, SLURM status is: 'FAILED'. Reason: Unknown.
    jobid: 0
    input: big/solver.prototxt, big/net.prototxt
    output: results/big_iter_2.caffemodel, results/big_iter_2.solverstate
    log: logs/train/big_iter_2.log, {dir}/rule_train/big_2/7.log {check}
    external_jobid: 7
[Sun Nov 29 14:25:30 2026]
Error in rule plot_curves:
    message: SLURM-job '9' failed, SLURM status is: 'FAILED'. Reason: Unknown.
    jobid: 1
    log: logs/plot_curves/small_iter_10.log, {dir}/rule_plot_curves/small_10/9.log {check}
    external_jobid: 9
Error in rule convert_mnist:
    jobid: 2
    log: logs/convert/train.log {check}
Shutting down, this might take some time.
"""

POLLED = """\
I1129 14:24:49.419721  8307 nets.py:76] Creating training net specified in net_param.
slurmstepd-vm: error: StepId=7.0 exceeded memory limit (459649024 > 419430400), being killed
slurmstepd-vm: error: Exceeded job memory limit
srun: error: vm: task 0: Killed
"""

CGROUP = """\
slurmstepd: error: Detected 1 oom_kill event in StepId=12.0. Some of the step tasks have \
been OOM Killed.
srun: error: node3: task 0: Out Of Memory
"""


def test_failed_jobs_are_read_from_the_error_blocks():
    jobs = failed_jobs(SNAKEMAKE_LOG.format(dir="/w/.snakemake/slurm_logs", check=CHECK))
    # A job that never reached SLURM has no job id.
    assert [(j.rule, j.job_id) for j in jobs] == [("train", "7"), ("plot_curves", "9"),
                                                  ("convert_mnist", "")]
    assert jobs[0].logs == ("logs/train/big_iter_2.log",
                            "/w/.snakemake/slurm_logs/rule_train/big_2/7.log")


def test_a_polled_memory_kill_names_rule_job_and_limit():
    line = memory_failure(FailedJob("train", "7", ()), POLLED, request_mb=lambda _: None)
    assert line.startswith("rule train, SLURM job 7: killed for memory: step 7.0 used 438 MB, "
                           "above the job's limit of 400 MB;")
    assert "--set-resources train:mem_mb=N" in line


def test_a_cgroup_kill_takes_the_limit_from_the_request():
    asked = []
    line = memory_failure(FailedJob("evaluate", "12", ()), CGROUP,
                          request_mb=lambda job: asked.append(job) or 2000)
    assert asked == ["12"]
    assert "rule evaluate, SLURM job 12: killed for memory: step 12.0 went above its limit " \
           "of 2000 MB" in line
    unknown = memory_failure(FailedJob("evaluate", "12", ()), CGROUP, request_mb=lambda _: None)
    assert "went above its memory request" in unknown


def test_other_failures_are_left_to_snakemake():
    assert memory_failure(FailedJob("train", "7", ()),
                          "Traceback ...\nValueError: bad solver\n", lambda _: 1) is None


def test_explain_failures_reads_the_logs_of_a_run(tmp_path):
    slurm_logs = tmp_path / "slurm_logs"
    (slurm_logs / "rule_train" / "big_2").mkdir(parents=True)
    (slurm_logs / "rule_train" / "big_2" / "7.log").write_text(POLLED)
    (slurm_logs / "rule_plot_curves" / "small_10").mkdir(parents=True)
    (slurm_logs / "rule_plot_curves" / "small_10" / "9.log").write_text("ValueError\n")
    log = tmp_path / "run.snakemake.log"
    log.write_text(SNAKEMAKE_LOG.format(dir=slurm_logs, check=CHECK))
    lines = explain_failures([log, tmp_path / "missing.log"], request_mb=lambda _: None)
    assert len(lines) == 1 and lines[0].startswith("rule train, SLURM job 7: killed for memory")


REFUSED_LOG = """\
Error in rule train:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Batch job submission \
failed: No partition specified or system default partition'.
    sbatch call:
        sbatch --parsable --job-name f528 -t 720 --mem 8000 --wrap="python -m snakemake"
For further error details see the cluster/cloud log and the log files of the involved rule(s).
    jobid: 0
Error in rule evaluate:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Batch job submission \
failed: Invalid account or account/partition combination specified'.
    jobid: 1
Error in rule plot_curves:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Batch job submission \
failed: Requested node configuration is not available'.
    jobid: 2
"""


def test_a_job_refused_for_its_partition_or_account_says_where_to_set_them(tmp_path):
    log = tmp_path / "run.snakemake.log"
    log.write_text(REFUSED_LOG)
    lines = explain_failures([log], request_mb=lambda _: None)
    assert lines == [
        "rule train: SLURM refused the job: No partition specified or system default "
        "partition; set slurm_partition (and slurm_account where your site needs one) under "
        "default-resources in workflow/profiles/slurm/config.yaml",
        "rule evaluate: SLURM refused the job: Invalid account or account/partition "
        "combination specified; set slurm_partition (and slurm_account where your site needs "
        "one) under default-resources in workflow/profiles/slurm/config.yaml",
    ]  # other refusals keep sbatch's own message only
