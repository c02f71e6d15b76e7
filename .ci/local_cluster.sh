#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to try the SLURM sweep paths on a laptop or in CI.
#
#   .ci/local_cluster.sh start    # install (Debian/Ubuntu, root or sudo), configure, start, wait idle
#   .ci/local_cluster.sh status   # sinfo; exit 0 when the node takes jobs
#   .ci/local_cluster.sh stop     # cancel its jobs, stop the daemons it started
#
# Everything it writes lives under $OVERSHOOT_SLURM_DIR (default /tmp/overshoot-slurm); /etc/slurm/slurm.conf
# is a symlink to the config there (only when no other slurm.conf exists), so sinfo/sbatch work without
# SLURM_CONF. It needs no stdin and is idempotent: `start` on a running cluster only checks it.
set -euo pipefail

STATE=${OVERSHOOT_SLURM_DIR:-/tmp/overshoot-slurm}
CONF="$STATE/slurm.conf"
HOST=$(hostname -s)
WAIT_S=${OVERSHOOT_SLURM_WAIT_S:-180}

log() { echo "local_cluster: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

if [[ $(id -u) -eq 0 ]]; then
	SUDO=()
elif command -v sudo >/dev/null; then
	SUDO=(sudo -n)
else
	SUDO=()
fi
as_root() {
	if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
		die "needs root (or passwordless sudo) for: $*"
	fi
	"${SUDO[@]}" "$@"
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { SLURM_CONF=$CONF sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n1 | tr -d '*~#$@ '; }

install_packages() {
	local missing=()
	for b in slurmctld slurmd sinfo munged; do
		command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] || missing+=("$b")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	command -v apt-get >/dev/null || die "missing ${missing[*]}: install slurmctld slurmd slurm-client munge"
	log "installing slurmctld slurmd slurm-client munge (apt-get)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		slurmctld slurmd slurm-client munge >/dev/null </dev/null
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
	if munge_works; then
		log "munge already works; using the running munged"
		return 0
	fi
	as_root mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
	if [[ ! -s /etc/munge/munge.key ]]; then
		log "creating a munge key"
		if command -v mungekey >/dev/null || [[ -x /usr/sbin/mungekey ]]; then
			as_root /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key --force
		else
			as_root dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
		fi
	fi
	as_root chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
	as_root chmod 0700 /etc/munge
	as_root chmod 0400 /etc/munge/munge.key
	as_root chmod 0755 /run/munge
	as_root runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
	as_root cp /run/munge/munged.pid "$STATE/munged.pid"
	for _ in $(seq 50); do
		munge_works && return 0
		sleep 0.2
	done
	die "munged did not start (see /var/log/munge/munged.log)"
}

write_conf() {
	local cpus mem_mb
	cpus=$(nproc)
	mem_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
	((mem_mb > 4000)) && mem_mb=4000
	mkdir -p "$STATE/state" "$STATE/spool" "$STATE/log"
	cat >"$CONF.tmp" <<EOF
# Written by .ci/local_cluster.sh: a one-node cluster for trying overshoot-bench sweeps.
ClusterName=overshoot
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SlurmUser=root
SlurmdUser=root
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
KillWait=10
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=300
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
	mv "$CONF.tmp" "$CONF"
	# sinfo/sbatch read /etc/slurm/slurm.conf; link ours there unless another cluster's config lives there.
	local etc=/etc/slurm/slurm.conf
	if [[ -L $etc && $(readlink "$etc") == "$CONF" ]]; then
		:
	elif [[ -e $etc || -L $etc ]]; then
		log "$etc belongs to another setup: export SLURM_CONF=$CONF to use this cluster"
	else
		as_root mkdir -p /etc/slurm
		as_root ln -s "$CONF" "$etc"
	fi
}

start() {
	mkdir -p "$STATE"
	if pid_alive "$STATE/slurmctld.pid" && pid_alive "$STATE/slurmd.pid"; then
		case "$(node_state)" in idle | mix | alloc | comp)
			log "already running (node $HOST $(node_state)); config $CONF"
			return 0
			;;
		esac
	fi
	install_packages
	start_munge
	write_conf
	pid_alive "$STATE/slurmctld.pid" || as_root /usr/sbin/slurmctld -c -f "$CONF"
	pid_alive "$STATE/slurmd.pid" || as_root /usr/sbin/slurmd -f "$CONF"
	local t0=$SECONDS st=""
	while ((SECONDS - t0 < WAIT_S)); do
		st=$(node_state)
		case "$st" in
		idle | mix | alloc)
			log "up: node $HOST $st after $((SECONDS - t0)) s; config $CONF"
			return 0
			;;
		down | drain | drng | fail)
			SLURM_CONF=$CONF scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
			;;
		esac
		sleep 1
	done
	log "node $HOST is '${st:-unknown}' after ${WAIT_S} s; last log lines:"
	tail -n 5 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
	exit 1
}

stop_pid() {
	local f=$1 pid
	pid_alive "$f" || {
		rm -f "$f"
		return 0
	}
	pid=$(cat "$f")
	as_root kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	kill -0 "$pid" 2>/dev/null && as_root kill -9 "$pid" 2>/dev/null
	rm -f "$f"
}

stop() {
	if pid_alive "$STATE/slurmctld.pid"; then
		local jobs
		jobs=$(SLURM_CONF=$CONF squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
		if [[ -n ${jobs// /} ]]; then
			log "cancelling jobs $jobs"
			# shellcheck disable=SC2086
			SLURM_CONF=$CONF scancel $jobs 2>/dev/null || true
			sleep 2
		fi
	fi
	stop_pid "$STATE/slurmd.pid"
	stop_pid "$STATE/slurmctld.pid"
	stop_pid "$STATE/munged.pid"
	if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$CONF" ]]; then
		as_root rm -f /etc/slurm/slurm.conf
	fi
	log "stopped (state kept in $STATE)"
}

status() {
	if [[ ! -f $CONF ]]; then
		log "not configured: run $0 start"
		exit 1
	fi
	SLURM_CONF=$CONF sinfo || true
	case "$(node_state)" in
	idle | mix | alloc) exit 0 ;;
	*) exit 1 ;;
	esac
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
	echo "usage: $0 start|stop|status" >&2
	exit 2
	;;
esac
