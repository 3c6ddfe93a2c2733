#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying workflow/profiles/slurm for real.
#
#   tools/slurm-test-cluster.sh install          # apt-get the packages (root, Debian/Ubuntu)
#   tools/slurm-test-cluster.sh start [DIR]      # munged, MariaDB, slurmdbd, slurmctld, slurmd
#   eval "$(tools/slurm-test-cluster.sh env [DIR])"   # SLURM_CONF for sbatch, sacct, snakemake
#   tools/slurm-test-cluster.sh status [DIR]
#   tools/slurm-test-cluster.sh stop [DIR]       # cancels jobs, stops the daemons; DIR is kept
#
# Everything (config, keys, database, spool, logs) lives under DIR (default /tmp/pcaffe-slurm)
# but the link /run/slurm/conf -> DIR/etc (see link_config); nothing under /etc is used. The node declares this machine's CPUs (nproc) and
# memory (MemTotal, or the cgroup's limit when lower). There is no systemd or cgroup here, so
# processes are tracked by parent pid (proctrack/linuxproc) and memory is enforced by polling
# (jobacct_gather/linux with OverMemoryKill): a step above its --mem is killed within about
# two seconds, not at the first byte over. Accounting (sacct, which the executor plugin asks
# for job states) goes to slurmdbd on a private MariaDB.
#
# Ports: SLURM_TEST_PORT (default 6817) for slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB.
# Must run as root: slurmd starts jobs as the submitting user.
set -euo pipefail

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
CLUSTER=pcaffe
ACCOUNT=pcaffe
PARTITION=debug

cmd=${1:-}
dir=${2:-/tmp/pcaffe-slurm}
port=${SLURM_TEST_PORT:-6817}
export PATH=$PATH:/usr/sbin:/sbin SLURM_CONF=$dir/etc/slurm.conf

die() { echo "slurm-test-cluster: $*" >&2; exit 1; }

missing_commands() {
  local c
  for c in munged slurmctld slurmd slurmdbd sbatch sacct sacctmgr mariadbd mariadb-install-db; do
    command -v "$c" >/dev/null 2>&1 || echo "$c"
  done
}

install() {
  [[ -z "$(missing_commands)" ]] && { echo "slurm-wlm, munge and MariaDB are installed"; return; }
  [[ $(id -u) -eq 0 ]] || die "installing ${PACKAGES[*]} needs root (sudo $0 install)"
  command -v apt-get >/dev/null || die "no apt-get: install ${PACKAGES[*]} with your package manager"
  # policy-rc.d keeps the packages' own services from starting (this script starts its own).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"
}

# The pid recorded in $1 if that process is alive and is the program $2.
live_pid() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' </proc/"$pid"/cmdline | grep -q -- "$2" \
    && echo "$pid"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within the time allowed; see $dir/log/"
    sleep 0.5
  done
}

memory_mb() {
  local total limit
  total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo max)
  if [[ $limit =~ ^[0-9]+$ ]] && ((limit / 1048576 < total)); then
    total=$((limit / 1048576))
  fi
  echo "$total"
}

write_config() {
  local host cpus mem password
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(memory_mb)
  password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  mkdir -p "$dir"/{etc,log,run,munge,spool/ctld,spool/d}
  chmod 755 "$dir" "$dir/munge"  # users other than root reach the munge socket
  head -c 1024 /dev/urandom >"$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  cat >"$dir/etc/slurm.conf" <<EOF
# Written by tools/slurm-test-cluster.sh: one node, this machine ($cpus CPUs, $mem MB).
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No systemd or cgroups in a container: track processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Memory is a consumable resource; a step above its request is killed by the poller.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((port + 2))
AccountingStorageEnforce=associations
# For slurmdbd connections the munge socket is given here, not by AuthInfo.
AccountingStoragePass=$dir/munge/munge.socket
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# A cancelled job's processes get SIGTERM, then SIGKILL this many seconds later.
KillWait=30
MinJobAge=300
SchedulerType=sched/backfill
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$dir/etc/slurmdbd.conf" <<EOF
# Written by tools/slurm-test-cluster.sh.
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
DbdHost=localhost
DbdPort=$((port + 2))
SlurmUser=root
PidFile=$dir/run/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((port + 3))
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$dir/etc/slurmdbd.conf"
  echo "$password" >"$dir/run/db.password"
  chmod 600 "$dir/run/db.password"
}

start_munge() {
  live_pid "$dir/run/munged.pid" munged >/dev/null && return
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  wait_for 20 munged munge --socket="$dir/munge/munge.socket" -n
}

start_mariadb() {
  local sql=(mariadb --no-defaults --socket="$dir/run/mariadb.sock" -u root)
  live_pid "$dir/run/mariadbd.pid" mariadbd >/dev/null && return
  if [[ ! -d $dir/db/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$dir/db" --user=root --skip-test-db \
      --auth-root-authentication-method=socket >"$dir/log/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed; see $dir/log/mariadb-install.log"
  fi
  # setsid: the server must outlive this script's session.
  setsid mariadbd --no-defaults --datadir="$dir/db" --user=root --bind-address=127.0.0.1 \
    --port=$((port + 3)) --socket="$dir/run/mariadb.sock" --pid-file="$dir/run/mariadbd.pid" \
    --log-error="$dir/log/mariadbd.log" --skip-log-bin --innodb-buffer-pool-size=32M \
    --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  wait_for 60 MariaDB "${sql[@]}" -e "SELECT 1"
  "${sql[@]}" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(<"$dir/run/db.password")';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm() {
  local user users=("$(id -un)")
  [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && users+=("$SUDO_USER")
  live_pid "$dir/run/slurmdbd.pid" slurmdbd >/dev/null || slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 60 slurmdbd sacctmgr -n list cluster
  # The cluster, one account and its users: with AccountingStorageEnforce=associations a
  # job needs an account (the users' default is $ACCOUNT).
  sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null || true
  sacctmgr -i -Q add account "$ACCOUNT" cluster="$CLUSTER" >/dev/null || true
  for user in "${users[@]}"; do
    sacctmgr -i -Q add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" \
      cluster="$CLUSTER" >/dev/null || true
  done
  live_pid "$dir/run/slurmctld.pid" slurmctld >/dev/null || slurmctld -f "$dir/etc/slurm.conf"
  wait_for 60 slurmctld scontrol ping
  live_pid "$dir/run/slurmd.pid" slurmd >/dev/null || slurmd -f "$dir/etc/slurm.conf"
  wait_for 60 "the node (idle in sinfo)" node_idle
}

# Commands inside a job find the config at /run/slurm/conf (where a configless slurmd keeps
# it): the executor plugin's job step clears every SLURM_* variable, SLURM_CONF included,
# before its inner srun. This link is the one thing written outside DIR.
link_config() {
  local link=/run/slurm/conf target
  if [[ -L $link ]]; then
    target=$(readlink "$link")
    [[ $target == "$dir/etc" ]] && return
    live_pid "$target/../run/slurmctld.pid" slurmctld >/dev/null \
      && die "$link points to another running test cluster ($target); stop it first"
  elif [[ -e $link ]]; then
    die "$link exists and is not this script's link (a real SLURM on this machine?)"
  fi
  mkdir -p /run/slurm
  ln -sfn "$dir/etc" "$link"
}

node_idle() { [[ $(sinfo -h -N -o %t 2>/dev/null) == idle ]]; }

start() {
  [[ $(id -u) -eq 0 ]] || die "start needs root (slurmd runs jobs as their user)"
  local missing
  missing=$(missing_commands | tr '\n' ' ')
  [[ -z $missing ]] || die "not installed: $missing(run: sudo $0 install)"
  [[ -f $dir/etc/slurm.conf ]] || write_config
  link_config
  start_munge
  start_mariadb
  start_slurm
  echo "SLURM cluster '$CLUSTER' up in $dir: node $(hostname -s), $(nproc) CPUs," \
    "$(memory_mb) MB, partition '$PARTITION', account '$ACCOUNT'"
  echo "export SLURM_CONF=$dir/etc/slurm.conf"
}

stop() {
  local name pid waited
  [[ -f $SLURM_CONF ]] || die "no cluster in $dir"
  if live_pid "$dir/run/slurmctld.pid" slurmctld >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    scancel --full --quiet --state=PENDING,RUNNING,SUSPENDED 2>/dev/null || true
    waited=0
    while [[ -n $(squeue -h -t running,completing 2>/dev/null) ]] && ((waited < 40)); do
      sleep 1; waited=$((waited + 1))
    done
  fi
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    pid=$(live_pid "$dir/run/$name.pid" "$name") || continue
    kill "$pid"
    waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < 60)); do sleep 0.5; waited=$((waited + 1)); done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $name ($pid)"
  done
  if [[ $(readlink /run/slurm/conf 2>/dev/null) == "$dir/etc" ]]; then
    rm /run/slurm/conf
    rmdir /run/slurm 2>/dev/null || true
  fi
  return 0
}

status() {
  local name pid down=0
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if pid=$(live_pid "$dir/run/$name.pid" "$name"); then
      echo "$name: running ($pid)"
    else
      echo "$name: not running"; down=1
    fi
  done
  ((down)) && return 1
  sinfo -N -o "%N %t %c %m"
}

case $cmd in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$dir/etc/slurm.conf" ;;
  *) die "usage: $0 install|start|stop|status|env [DIR]" ;;
esac
