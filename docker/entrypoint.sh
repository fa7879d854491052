#!/usr/bin/env bash
# The images' entry point.
#   server  munged + slurmctld (when QJOBS_DISPATCHER=slurm) + qjobs-server
#   worker  munged + slurmd as a dynamic node of that controller
#   other   run as given (e.g. `jobctl list`)
# Shared with every service: /srv/qjobs (user_data and the job directories,
# the same path everywhere, as the Slurm dispatcher requires) and
# /etc/munge/munge.key (the munge volume).
set -euo pipefail
role="${1:-server}"
shift || true
data=/srv/qjobs
mkdir -p "$data/slurm" /run/munge /var/spool/slurmd /var/log/slurm

start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    [[ "$role" == server ]] || { echo "waiting for the server to create the munge key"; sleep 5; }
    [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key /run/munge && chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
}

write_slurm_conf() {
  # One file on the shared volume: the controller writes it, nodes read it.
  cat > "$data/slurm/slurm.conf" <<CONF
ClusterName=qjobs
SlurmctldHost=${QJOBS_SLURMCTLD_HOST:-server}
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$data/slurm/state
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MaxNodeCount=${QJOBS_MAX_NODES:-64}
TreeWidth=65533
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

case "$role" in
  server)
    start_munge
    args=(--listen "0.0.0.0:${QJOBS_PORT:-8080}" --user-data "$data")
    if [[ "${QJOBS_DISPATCHER:-slurm}" == slurm ]]; then
      write_slurm_conf
      mkdir -p "$data/slurm/state"
      export SLURM_CONF="$data/slurm/slurm.conf"
      /usr/sbin/slurmctld
      args+=(--dispatcher slurm --slurm-gres gpu)
    else
      args+=(--slots "${QJOBS_SLOTS:-1}")
    fi
    [[ -n "${QJOBS_TOKENS_FILE:-}" ]] && args+=(--tokens-file "$QJOBS_TOKENS_FILE")
    exec /usr/local/bin/qjobs-server "${args[@]}" "$@"
    ;;
  worker)
    start_munge
    until [[ -s "$data/slurm/slurm.conf" ]]; do echo "waiting for $data/slurm/slurm.conf"; sleep 2; done
    export SLURM_CONF="$data/slurm/slurm.conf"
    gpus=$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)
    conf="Gres=gpu:${gpus}"
    # A dynamic node (slurmd -Z, Slurm 22.05): it registers itself with its GPUs.
    exec /usr/sbin/slurmd -D -Z --conf "$conf" "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
