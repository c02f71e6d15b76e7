#!/usr/bin/env bash
# The CPU reproductions committed under results/: the paper's grid (CM, NAG, SGDO gamma 3/5/7, Adam, NAdam,
# AdamO gamma 3/5/7) with the paper's 10 seeds on the default digits task and on MLP-CA (housing, the real
# paper task); then the report and figures of each into results/<task>/.
#
#   OVERSHOOT_DATA=/path/to/data scripts/bench/reproduce_cpu.sh [digits] [housing]
#
# Runs go to $OUT (default runs/repro) and resume when interrupted. The two optimizer families of housing
# train as two populations in parallel processes (one CPU core each).
set -euo pipefail
OUT=${OUT:-runs/repro}
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(digits housing)

for task in "${tasks[@]}"; do
	case $task in
	digits)
		# exit status 1 means some run failed or diverged: the report lists those, so carry on
		overshoot-bench -m +sweep=paper task=digits out="$OUT" progress=none || [ $? -eq 1 ]
		;;
	housing)
		overshoot-bench -m +sweep=paper task=housing +method=sgd,nesterov,sgd_os_g3,sgd_os_g5,sgd_os_g7 \
			out="$OUT" progress=lines >"$OUT.housing-sgd.log" 2>&1 &
		sleep 2 # distinct Hydra sweep directories
		overshoot-bench -m +sweep=paper task=housing +method=adam,nadam,adam_os_g3,adam_os_g5,adam_os_g7 \
			out="$OUT" progress=lines >"$OUT.housing-adam.log" 2>&1 &
		wait
		;;
	*)
		echo "reproduce_cpu.sh: unknown task $task (digits, housing)" >&2
		exit 2
		;;
	esac
	overshoot-bench-report "$OUT/$task" --paper --out "results/$task"
done
