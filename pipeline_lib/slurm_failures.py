"""Why a workflow job failed on SLURM, in one line, for the two failures users can fix.

- Killed for memory: the executor plugin reports a bare failure ("SLURM status is:
  'FAILED'. Reason: Unknown" where jobacct_gather's polling enforces memory; the status
  OUT_OF_MEMORY where cgroups do). The reason is in the job's SLURM log, written by
  slurmstepd: the line names the rule, the job id and the limit.
- Refused by sbatch for its partition or account (none given, and the cluster has no
  default): the line names the rule, sbatch's reason and where the profile takes them.

`explain_failures` reads Snakemake's log of the run for the failed jobs ("Error in rule
...", with `external_jobid` and the SLURM log among `log:`), then each job's SLURM log. The
workflow's `onerror` handler prints its lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

MB = 1 << 20
# slurmstepd, jobacct_gather with OverMemoryKill: "StepId=7.0 exceeded memory limit
# (459649024 > 419430400), being killed" (bytes).
POLLED = re.compile(r"StepId=(\S+) exceeded memory limit \((\d+) > (\d+)\)")
# slurmstepd, task/cgroup: "Detected 1 oom_kill event in StepId=7.batch." (or "oom-kill").
CGROUP = re.compile(r"Detected \d+ oom[-_]kill events? in StepId=(\S+?)\.?(?:\s|$)")
ERROR_BLOCK = re.compile(r"^Error in rule (\S+):\n((?:[ \t]+.*\n?)*)", re.M)
# The plugin's words when sbatch refuses a job, and sbatch's own reason inside them.
REFUSED = re.compile(r"SLURM sbatch failed\. The error message was '(?:sbatch: error: )?"
                     r"(?:Batch job submission failed: )?(.*?)'", re.S)
PROFILE = "workflow/profiles/slurm/config.yaml"


@dataclass(frozen=True)
class FailedJob:
    rule: str
    job_id: str  # "" when the job never reached SLURM
    logs: tuple[str, ...]
    text: str = ""  # the error block


def failed_jobs(snakemake_log: str) -> list[FailedJob]:
    """The failed jobs named in a Snakemake log, in order; a SLURM job id once."""
    jobs: list[FailedJob] = []
    seen: set[str] = set()
    for match in ERROR_BLOCK.finditer(snakemake_log):
        fields = dict(re.findall(r"^\s+(\w+): (.*)$", match.group(2), re.M))
        job_id = fields.get("external_jobid", "").strip()
        if job_id and job_id in seen:
            continue
        seen.add(job_id)
        logs = fields.get("log", "").split(" (check log file", 1)[0]
        jobs.append(FailedJob(match.group(1), job_id,
                              tuple(p.strip() for p in logs.split(", ") if p.strip()),
                              match.group(2)))
    return jobs


def refused_submission(job: FailedJob) -> str | None:
    """One line if sbatch refused the job for its partition or account."""
    refused = REFUSED.search(job.text)
    reason = refused.group(1).strip() if refused else ""
    if not re.search(r"partition|account", reason, re.I):
        return None
    return (f"rule {job.rule}: SLURM refused the job: {reason}; set slurm_partition (and "
            f"slurm_account where your site needs one) under default-resources in {PROFILE}")


def sacct_request_mb(job_id: str) -> int | None:
    """The job's memory request in MB, as sacct reports it (ReqMem, e.g. "400M"); None if
    sacct is missing or says nothing usable."""
    if shutil.which("sacct") is None:
        return None
    try:
        done = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "ReqMem"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.match(r"(\d+(?:\.\d+)?)([KMGT])", done.stdout.strip())
    if not found:
        return None
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[found.group(2)]
    return round(float(found.group(1)) * scale)


def memory_failure(job: FailedJob, slurm_log: str,
                   request_mb: Callable[[str], int | None] = sacct_request_mb) -> str | None:
    """One line naming the rule, the job id and the limit if the job was killed for memory."""
    advice = (f"raise mem_mb for rule {job.rule} (set-resources in the profile, or "
              f"--set-resources {job.rule}:mem_mb=N)")
    polled = POLLED.search(slurm_log)
    if polled:
        step, used, limit = polled.group(1), int(polled.group(2)), int(polled.group(3))
        return (f"rule {job.rule}, SLURM job {job.job_id}: killed for memory: step {step} "
                f"used {used / MB:.0f} MB, above the job's limit of {limit / MB:.0f} MB; "
                f"{advice}")
    cgroup = CGROUP.search(slurm_log)
    if cgroup:
        limit_mb = request_mb(job.job_id)
        limit = f"its limit of {limit_mb} MB" if limit_mb else "its memory request"
        return (f"rule {job.rule}, SLURM job {job.job_id}: killed for memory: step "
                f"{cgroup.group(1)} went above {limit} (out-of-memory kill); {advice}")
    return None


def explain_failures(snakemake_logs: Iterable[str | Path],
                     request_mb: Callable[[str], int | None] = sacct_request_mb) -> list[str]:
    """One line per job of these Snakemake logs that SLURM killed for its memory or that
    sbatch refused for its partition or account."""
    lines = []
    for log in snakemake_logs:
        try:
            text = Path(log).read_text(errors="replace")
        except OSError:
            continue
        for job in failed_jobs(text):
            refused = refused_submission(job)
            if refused:
                lines.append(refused)
                continue
            for path in job.logs if job.job_id else ():
                if not Path(path).name.startswith(f"{job.job_id}."):
                    continue  # the rule's own log, not the SLURM job's
                try:
                    slurm_log = Path(path).read_text(errors="replace")
                except OSError:
                    continue
                line = memory_failure(job, slurm_log, request_mb)
                if line:
                    lines.append(line)
                    break
    return lines
