#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine (Debian's slurm-wlm and munge), so that
# recipes can run with DIFFASR_CMD_BACKEND=slurm: every `JOB=1:N` step then goes through
# `sbatch --wait --array` (utils/launch.py).
#
#   sudo tools/slurm/setup_one_node.sh          # install, configure, start; waits for the node
#   sudo tools/slurm/setup_one_node.sh --stop   # stop the daemons
#
# The node offers all of this machine's CPUs and memory in one partition, "main";
# processes are tracked without cgroups (containers rarely delegate them). Rerunning it
# is safe: a running cluster is restarted with the same configuration.
set -euo pipefail

conf_dir=/etc/slurm
state_dir=/var/spool/slurmctld
spool_dir=/var/spool/slurmd
log_dir=/var/log/slurm
host=$(hostname -s)

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  sleep 1
}

if [ "${1:-}" = --stop ]; then
  stop
  echo "setup_one_node.sh: Slurm stopped"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup_one_node.sh: run as root (it installs packages and starts system daemons)" >&2
  exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

stop

# munge authenticates every Slurm message; one key shared by the (single) node.
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
sudo_munge() { if command -v runuser >/dev/null; then runuser -u munge -- "$@"; else su -s /bin/sh munge -c "$*"; fi; }
sudo_munge /usr/sbin/munged

cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "${conf_dir}" "${state_dir}" "${spool_dir}" "${log_dir}"
cat >"${conf_dir}/slurm.conf" <<CONF
# Written by diffasr tools/slurm/setup_one_node.sh: one node, this machine.
ClusterName=diffasr
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=${state_dir}
SlurmdSpoolDir=${spool_dir}
SlurmctldLogFile=${log_dir}/slurmctld.log
SlurmdLogFile=${log_dir}/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=5
Waittime=0
NodeName=${host} CPUs=${cpus} RealMemory=${memory_mb} State=UNKNOWN
PartitionName=main Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
rm -f "${conf_dir}/cgroup.conf"  # no cgroups (proctrack/linuxproc, task/none)

/usr/sbin/slurmctld
/usr/sbin/slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
  case "${state}" in
    idle|mixed|allocated) echo "setup_one_node.sh: node ${host} is ${state} (${cpus} CPUs, ${memory_mb} MB)"; exit 0 ;;
    down*|drain*) scontrol update nodename="${host}" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "setup_one_node.sh: the node did not come up; see ${log_dir}/slurmctld.log and slurmd.log" >&2
exit 1
