#!/usr/bin/env bash
# A one-machine Slurm cluster for qjobs' tests and demo, from Debian's
# slurm-wlm 22.05: munged, MariaDB + slurmdbd (so that sacct has accounting),
# slurmctld and slurmd, all as root, all state under one folder.
#
#   scripts/slurm-local.sh start [--dir DIR] [--cpus N] [--gpus N] [--hosts N] [--install]
#   scripts/slurm-local.sh stop  [--dir DIR]
#   scripts/slurm-local.sh status [--dir DIR]
#   scripts/slurm-local.sh lose-host NAME [--dir DIR]
#   scripts/slurm-local.sh restore-host NAME [--dir DIR]
#
# --hosts N (N >= 1) makes a cluster of N+1 hosts on this machine instead of
# one: each host is a network namespace with its own address on a bridge
# (10.77.0.0/24) and its own hostname (a UTS namespace). slurmdbd and
# slurmctld run on host "qjctl" (10.77.0.10), one slurmd on each of
# "qjnode1".."qjnodeN" (10.77.0.11..); whoever runs sbatch (qjobs-server)
# stays on this machine's own network and reaches the controller across the
# bridge (10.77.0.1), as a login node would. The hosts see one file system,
# as nodes sharing the job folders over NFS at the same path would. lose-host
# NAME takes a node away the way a power cut would: every process on it
# (slurmd, slurmstepd, the job's worker) is killed at once and its network
# link goes down; slurmctld notices within SlurmdTimeout (10 s) and fails the
# node's jobs with NODE_FAIL.
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
target=""
dir="${QJOBS_SLURM_DIR:-/tmp/qjobs-slurm}"
cpus=2
gpus=0
hosts=0
install=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --gpus) gpus="$2"; shift 2 ;;
    --hosts) hosts="$2"; shift 2 ;;
    --install) install=1; shift ;;
    -*) echo "slurm-local.sh: unknown argument $1" >&2; exit 2 ;;
    *) target="$1"; shift ;;
  esac
done

log() { echo "slurm-local: $*" >&2; }

pids_of() {  # the pids recorded under $dir/run
  for f in "$dir"/run/*.pid; do [ -s "$f" ] && cat "$f"; done 2>/dev/null || true
}

# The network of a --hosts cluster: a bridge, and per host a namespace
# joined to it by a veth pair. Names carry the folder's hash, so that two
# clusters (two CI runs) never share them.
net_id() { printf '%s' "$dir" | cksum | cut -c1-4; }
ns_of() { echo "qj$(net_id)-$1"; }          # namespace of host $1
bridge_of() { echo "qjbr$(net_id)"; }

# Runs "$@" on host $1: in its network namespace, with its hostname. (nsenter,
# not `ip netns exec`, which remounts /sys and so hides the cgroup file
# system slurmd needs.)
on_host() {
  local host="$1"
  shift
  nsenter --net="/run/netns/$(ns_of "$host")" unshare --uts -- sh -c 'hostname "$0"; exec "$@"' "$host" "$@"
}

net_down() {
  [ -f "$dir/hosts" ] || return 0
  local h
  for h in $(cat "$dir/hosts"); do
    ip netns pids "$(ns_of "$h")" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$(ns_of "$h")" 2>/dev/null || true
  done
  ip link del "$(bridge_of)" 2>/dev/null || true
}

net_up() {  # net_up HOST:ADDR...
  local br
  br=$(bridge_of)
  ip link add "$br" type bridge
  ip addr add 10.77.0.1/24 dev "$br"
  ip link set "$br" up
  : >"$dir/hosts"
  local entry host addr ns i=0
  for entry in "$@"; do
    host=${entry%%:*} addr=${entry#*:} ns=$(ns_of "$host")
    i=$((i + 1))
    echo "$host" >>"$dir/hosts"
    ip netns add "$ns"
    ip link add "qv$(net_id)$i" type veth peer name eth0 netns "$ns"
    ip link set "qv$(net_id)$i" master "$br" up
    ip netns exec "$ns" ip addr add "$addr/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    echo "$i" >"$dir/run/link-$host"
  done
}

stop() {
  [ -d "$dir" ] || return 0
  for f in "$dir"/run/slurmd*.pid "$dir"/run/slurmctld.pid "$dir"/run/slurmdbd.pid "$dir"/run/mariadb.pid \
           "$dir"/run/munged.pid; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # slurmstepd processes of jobs still running when slurmd went.
  pkill -KILL -f "slurmstepd.*$dir" 2>/dev/null || true
  net_down
  rm -rf "$dir"
  log "stopped"
}

lose_host() {
  [ -n "$target" ] && grep -qx "$target" "$dir/hosts" 2>/dev/null || { log "no host '$target' in $dir/hosts"; exit 2; }
  ip netns pids "$(ns_of "$target")" | xargs -r kill -KILL 2>/dev/null || true
  ip link set "qv$(net_id)$(cat "$dir/run/link-$target")" down
  log "host $target lost: its processes killed, its link down"
}

# Brings a lost node back: its link up and a new slurmd, which registers
# and, with ReturnToService=2, takes jobs again.
restore_host() {
  [ -n "$target" ] && grep -qx "$target" "$dir/hosts" 2>/dev/null || { log "no host '$target' in $dir/hosts"; exit 2; }
  ip link set "qv$(net_id)$(cat "$dir/run/link-$target")" up
  export SLURM_CONF="$dir/slurm.conf"
  on_host "$target" /usr/sbin/slurmd -f "$dir/slurm.conf"
  scontrol update nodename="$target" state=resume >/dev/null 2>&1 || true
  wait_for 30 "slurmd-$target" bash -c "sinfo -h -n '$target' -o '%T' | grep -qE '^(idle|mixed|allocated)$'"
  log "host $target restored"
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

  # The hosts: this machine alone, or a controller and N nodes, each in
  # its own network and UTS namespace (--hosts N).
  local ctl_host="$host" ctl_addr=127.0.0.1 nodes=("$host:127.0.0.1") slurmd_timeout=30
  if [ "$hosts" -gt 0 ]; then
    command -v ip >/dev/null && command -v unshare >/dev/null || { log "--hosts needs ip and unshare"; exit 1; }
    ctl_host=qjctl ctl_addr=10.77.0.10 nodes=() slurmd_timeout=10
    for i in $(seq 1 "$hosts"); do nodes+=("qjnode$i:10.77.0.$((10 + i))"); done
    net_up "$ctl_host:$ctl_addr" "${nodes[@]}"
  fi
  on_ctl() { if [ "$hosts" -gt 0 ]; then on_host "$ctl_host" "$@"; else "$@"; fi; }

  # Fake GPUs: character devices equal to /dev/null, per node.
  local gres_types="" node_gres="" entry node
  : >"$dir/gres.conf"
  if [ "$gpus" -gt 0 ]; then
    echo "AutoDetect=off" >"$dir/gres.conf"
    for entry in "${nodes[@]}"; do
      node=${entry%%:*}
      for i in $(seq 0 $((gpus - 1))); do
        mknod "$dir/gpus/$node-nvidia$i" c 1 3
        echo "NodeName=$node Name=gpu File=$dir/gpus/$node-nvidia$i" >>"$dir/gres.conf"
      done
    done
    gres_types="GresTypes=gpu"
    node_gres="Gres=gpu:$gpus"
  fi

  local dbd_host=localhost
  [ "$hosts" -gt 0 ] && dbd_host="$ctl_host"
  cat >"$dir/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=$dbd_host
DbdAddr=$ctl_addr
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

  local node_lines="" node_names=""
  for entry in "${nodes[@]}"; do
    node=${entry%%:*}
    node_lines+="NodeName=$node NodeAddr=${entry#*:} CPUs=$cpus RealMemory=4000 $node_gres State=UNKNOWN"$'\n'
    node_names+="${node_names:+,}$node"
    mkdir -p "$dir/spool/slurmd-$node"
  done
  cat >"$dir/slurm.conf" <<EOF
ClusterName=qjobs-local
SlurmctldHost=$ctl_host($ctl_addr)
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$ctl_addr
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
SlurmdTimeout=$slurmd_timeout
InactiveLimit=0
MpiDefault=none
$gres_types
${node_lines}PartitionName=qjobs Nodes=$node_names Default=YES MaxTime=INFINITE State=UP
EOF
  # No cgroup constraints (proctrack/linuxproc, task/none); slurmd still
  # loads a cgroup plugin at start, without systemd here.
  printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\nConstrainDevices=no\n' >"$dir/cgroup.conf"

  export SLURM_CONF="$dir/slurm.conf"
  MYSQL_UNIX_PORT="$dir/run/mysql.sock" on_ctl slurmdbd
  wait_for 30 slurmdbd timeout 5 sacctmgr -i list cluster
  timeout 20 sacctmgr -i add cluster qjobs-local >/dev/null 2>&1 || true
  timeout 20 sacctmgr -i add account qjobs Description=qjobs Organization=qjobs >/dev/null 2>&1 || true
  timeout 20 sacctmgr -i add user root Account=qjobs >/dev/null 2>&1 || true
  on_ctl slurmctld -f "$dir/slurm.conf"
  wait_for 30 slurmctld timeout 5 scontrol ping
  for entry in "${nodes[@]}"; do
    if [ "$hosts" -gt 0 ]; then on_host "${entry%%:*}" slurmd -f "$dir/slurm.conf"; else slurmd -f "$dir/slurm.conf"; fi
  done
  wait_for 30 slurmd bash -c "[ \$(sinfo -h -N -o '%T' | grep -cE '^(idle|mixed|allocated)') -ge ${#nodes[@]} ]"
  if [ "$hosts" -gt 0 ]; then log "hosts: $ctl_host ($ctl_addr: slurmctld, slurmdbd) and ${nodes[*]}"; fi
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
  lose-host) lose_host ;;
  restore-host) restore_host ;;
  *) echo "usage: slurm-local.sh start|stop|status|lose-host NAME|restore-host NAME [--dir DIR] [--cpus N] [--gpus N] [--hosts N] [--install]" >&2; exit 2 ;;
esac
