#!/usr/bin/env bash
# A one-machine Slurm cluster for qjobs' tests and demo, from Debian's
# slurm-wlm 22.05: munged, MariaDB + slurmdbd (so that sacct has accounting),
# slurmctld and slurmd, all as root, all state under one folder.
#
#   scripts/slurm-local.sh start [--dir DIR] [--cpus N] [--gpus N] [--install]
#   scripts/slurm-local.sh stop  [--dir DIR]
#   scripts/slurm-local.sh status [--dir DIR]
#
# start prints the one line a shell needs, `export SLURM_CONF=DIR/slurm.conf`;
# every Slurm command (sbatch, squeue, sacct, scancel) and qjobs-server's
# Slurm dispatcher read that variable. The node has N CPUs (default 2) and,
# with --gpus N, N fake GPUs: gres.conf with AutoDetect=off and character
# devices made with mknod as copies of /dev/null, so Slurm allocates and
# accounts `gres/gpu` and sets CUDA_VISIBLE_DEVICES, though no GPU exists.
# --install apt-gets the packages first (slurm-wlm, slurmdbd, munge,
# mariadb-server). stop ends every daemon it started and removes DIR.
set -euo pipefail

cmd="${1:-}"
shift || true
dir="${QJOBS_SLURM_DIR:-/tmp/qjobs-slurm}"
cpus=2
gpus=0
install=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --install) install=1; shift ;;
    *) echo "slurm-local.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { echo "slurm-local: $*" >&2; }

pids_of() {  # the pids recorded under $dir/run
  for f in "$dir"/run/*.pid; do [ -s "$f" ] && cat "$f"; done 2>/dev/null || true
}

stop() {
  [ -d "$dir" ] || return 0
  for name in slurmd slurmctld slurmdbd mariadb munged; do
    f="$dir/run/$name.pid"
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # slurmstepd processes of jobs still running when slurmd went.
  pkill -KILL -f "slurmstepd.*$dir" 2>/dev/null || true
  rm -rf "$dir"
  log "stopped"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit="$1" what="$2"
  shift 2
  for _ in $(seq 1 $((limit * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$what did not come up; its log:"
  tail -n 30 "$dir/log/$what.log" >&2 2>/dev/null || true
  return 1
}

start() {
  if [ "$(id -u)" != 0 ]; then log "must run as root (the daemons run as root)"; exit 1; fi
  if [ "$install" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      slurm-wlm slurm-client slurmdbd munge mariadb-server mariadb-client >/dev/null
  fi
  for b in munged mariadbd slurmdbd slurmctld slurmd sbatch sacct sacctmgr; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { log "$b is not installed (try --install)"; exit 1; }
  done
  export PATH="/usr/sbin:$PATH"
  [ -d "$dir" ] && stop
  mkdir -p "$dir"/{run,log,state,spool,munge,mysql,gpus}
  chmod 700 "$dir/munge"
  local host
  host=$(hostname -s)

  # munge on the default socket: Slurm's clients (sacctmgr, and sacct
  # talking to slurmdbd) use that path whatever AuthInfo says. One that
  # already serves it (started by the package) is used as it is: every
  # daemon here is on this machine, so any key works.
  if [ -S /run/munge/munge.socket.2 ] && timeout 5 munge -n >/dev/null 2>&1; then
    log "using the munged already serving /run/munge/munge.socket.2"
  else
    mkdir -p /run/munge
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" \
      --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
    wait_for 10 munged timeout 5 munge -n
  fi

  # MariaDB on a socket of its own, for slurmdbd only.
  mariadb-install-db --user=root --datadir="$dir/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$dir/log/mariadb-install.log" 2>&1
  mariadbd --user=root --datadir="$dir/mysql" --socket="$dir/run/mysql.sock" --skip-networking \
    --pid-file="$dir/run/mariadb.pid" --log-error="$dir/log/mariadb.log" --innodb-buffer-pool-size=32M \
    --skip-log-bin >/dev/null 2>&1 &
  wait_for 30 mariadb mariadb --socket="$dir/run/mysql.sock" -e "select 1"
  mariadb --socket="$dir/run/mysql.sock" -e "create database if not exists slurm_acct_db"

  # Fake GPUs: character devices equal to /dev/null, one per GPU.
  local gres_types="" node_gres=""
  : >"$dir/gres.conf"
  if [ "$gpus" -gt 0 ]; then
    echo "AutoDetect=off" >"$dir/gres.conf"
    for i in $(seq 0 $((gpus - 1))); do
      mknod "$dir/gpus/nvidia$i" c 1 3
      echo "NodeName=$host Name=gpu File=$dir/gpus/nvidia$i" >>"$dir/gres.conf"
    done
    gres_types="GresTypes=gpu"
    node_gres="Gres=gpu:$gpus"
  fi

  cat >"$dir/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=16819
SlurmUser=root
LogFile=$dir/log/slurmdbd.log
PidFile=$dir/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=root
EOF
  # slurmdbd reaches MariaDB's socket through MYSQL_UNIX_PORT (below), which
  # the client library reads, so that no system path is touched.
  chmod 600 "$dir/slurmdbd.conf"

  cat >"$dir/slurm.conf" <<EOF
ClusterName=qjobs-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=16819
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
PriorityType=priority/multifactor
PriorityWeightAge=0
PriorityWeightFairshare=0
PriorityWeightJobSize=0
PriorityWeightPartition=10000
PriorityWeightQOS=0
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=600
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MpiDefault=none
$gres_types
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=4000 $node_gres State=UNKNOWN
PartitionName=qjobs Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  # No cgroup constraints (proctrack/linuxproc, task/none); slurmd still
  # loads a cgroup plugin at start, without systemd here.
  printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\nConstrainDevices=no\n' >"$dir/cgroup.conf"
  mkdir -p "$dir/spool/slurmd-$host"

  export SLURM_CONF="$dir/slurm.conf"
  MYSQL_UNIX_PORT="$dir/run/mysql.sock" slurmdbd
  wait_for 30 slurmdbd timeout 5 sacctmgr -i list cluster
  timeout 20 sacctmgr -i add cluster qjobs-local >/dev/null 2>&1 || true
  timeout 20 sacctmgr -i add account qjobs Description=qjobs Organization=qjobs >/dev/null 2>&1 || true
  timeout 20 sacctmgr -i add user root Account=qjobs >/dev/null 2>&1 || true
  slurmctld -f "$dir/slurm.conf"
  wait_for 30 slurmctld timeout 5 scontrol ping
  slurmd -f "$dir/slurm.conf"
  wait_for 30 slurmd timeout 5 bash -c "sinfo -h -N -o '%T' | grep -qE '^(idle|mixed|allocated)'"
  log "up: $cpus CPUs, $gpus fake GPUs, state in $dir"
  echo "export SLURM_CONF=$dir/slurm.conf"
}

status() {
  export SLURM_CONF="$dir/slurm.conf"
  [ -f "$SLURM_CONF" ] || { log "not started (no $SLURM_CONF)"; exit 1; }
  scontrol ping
  sinfo -N -o '%N %C %G %T'
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: slurm-local.sh start|stop|status [--dir DIR] [--cpus N] [--gpus N] [--install]" >&2; exit 2 ;;
esac
