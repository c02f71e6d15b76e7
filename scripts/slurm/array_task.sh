#!/usr/bin/env bash
# One task of a SLURM job array made by submit_array.py: runs its slice of the manifest.
#
#   array_task.sh MANIFEST PACK [BIN]
#
# Task i runs manifest lines i*PACK .. i*PACK+PACK-1 concurrently (PACK small runs share one GPU), each as
# `BIN <line>` (BIN defaults to overshoot-bench) with its output in logs/<job>_<task>-<line>.log next to the
# manifest, waits for all, and exits non-zero when any run did not complete. On SIGUSR2 (sent by SLURM before
# the time limit: sbatch --signal=B:USR2@SECONDS), SIGTERM (preemption, scancel) or SIGINT it forwards
# SIGTERM to the runs, which checkpoint and mark themselves interrupted; relaunching the sweep resumes them.
# With OVERSHOOT_REQUEUE=1 (submit_array.py --requeue) a task stopped by SIGUSR2 then requeues itself, and its
# runs resume when it starts again (completed ones are skipped).
set -uo pipefail

MANIFEST=${1:?usage: array_task.sh MANIFEST PACK [BIN]}
PACK=${2:?usage: array_task.sh MANIFEST PACK [BIN]}
BIN=${3:-overshoot-bench}
TASK=${SLURM_ARRAY_TASK_ID:?array_task.sh runs as a task of a SLURM job array}
LOGS="$(dirname "$MANIFEST")/logs"
mkdir -p "$LOGS"

mapfile -t LINES <"$MANIFEST"
first=$((TASK * PACK))
last=$((first + PACK - 1))
((last >= ${#LINES[@]})) && last=$((${#LINES[@]} - 1))
if ((first > last)); then
	echo "array task $TASK: no manifest line $first (manifest has ${#LINES[@]})" >&2
	exit 1
fi

pids=()
caught=""
stop() {
	caught=$1
	echo "array task $TASK: caught $1, asking ${#pids[@]} runs to checkpoint and stop" >&2
	kill -TERM "${pids[@]}" 2>/dev/null
}
trap 'stop USR2' USR2
trap 'stop TERM' TERM
trap 'stop INT' INT

for ((i = first; i <= last; i++)); do
	eval "args=(${LINES[i]})"
	log="$LOGS/${SLURM_ARRAY_JOB_ID:-job}_${TASK}-$i.log"
	echo "array task $TASK: line $i: $BIN ${LINES[i]} > $log"
	"$BIN" "${args[@]}" >>"$log" 2>&1 &
	pids+=($!)
done

rc=0
for idx in "${!pids[@]}"; do
	# `wait` returns early (>128) when a trapped signal arrives: wait again until the run has exited.
	while true; do
		wait "${pids[idx]}"
		code=$?
		kill -0 "${pids[idx]}" 2>/dev/null || break
	done
	line=$((first + idx))
	echo "array task $TASK: line $line exited $code"
	((code != 0)) && rc=1
done
if [[ $caught == USR2 && ${OVERSHOOT_REQUEUE:-0} == 1 && -n ${SLURM_ARRAY_JOB_ID:-} ]]; then
	echo "array task $TASK: time limit near: requeueing ${SLURM_ARRAY_JOB_ID}_${TASK}"
	scontrol requeue "${SLURM_ARRAY_JOB_ID}_${TASK}"
fi
exit $rc
