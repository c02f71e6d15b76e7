#!/usr/bin/env bash
# Every table and figure of the paper from a run store, in one folder (scripts/paper/README.md: which file is
# which table or figure, and the sweeps that train the runs).
#
#   bash scripts/paper/make_all.sh STORE [OUT] [DISTANCE_STORE]
#
# STORE: runs of the paper's grid (overshoot-bench -m +sweep=paper_all out=STORE, or +sweep=paper per task).
# OUT: where the tables and figures go (default: paper). DISTANCE_STORE: runs that logged the weighted
# distance (log.distance=true), for Figure 2; without it Figure 2 is listed as not made, with the reason.
# Exit status 0 when every table and figure was written, 1 when one is missing (each is named), 2 bad usage.
set -euo pipefail
if [[ $# -lt 1 || $# -gt 3 || $1 == -h || $1 == --help ]]; then
	sed -n '2,10s/^# \{0,1\}//p' "$0"
	[[ $# -ge 1 && ($1 == -h || $1 == --help) ]] && exit 0
	exit 2
fi
STORE=$1
OUT=${2:-paper}
DISTANCE_STORE=${3:-}

# Table 1, the savings tables (the paper's way and per seed), the headline per task and method, the paper's
# 7-task mean beside this store's mean over the paper tasks it holds (paper_mean),
# Figure 1 (loss curves), Figure 3 (the gamma-mu plane), savings vs gamma; as md, csv, tex, html, png and pdf.
overshoot-bench-report "$STORE" --paper --out "$OUT"

# Figure 2: the average weighted distance vs gamma, from its own runs (another protocol than the grid's).
if [[ -n $DISTANCE_STORE ]]; then
	overshoot-bench-report "$DISTANCE_STORE" --out "$OUT/figure2"
	cp "$OUT/figure2/figures/distance_vs_gamma.png" "$OUT/figure2/figures/distance_vs_gamma.pdf" "$OUT/figures/" ||
		echo "make_all.sh: no run in $DISTANCE_STORE logged the distance (train with log.distance=true)" >&2
fi

missing=0
echo "paper tables and figures in $OUT/:"
for f in table1.tex headline.tex paper_mean.tex savings_paper.tex savings_per_seed.tex savings_vs_gamma.tex \
	figures/loss_grid.pdf figures/distance_vs_gamma.pdf figures/gamma_mu_plane.pdf figures/saving_vs_gamma.pdf; do
	if [[ -f $OUT/$f ]]; then
		echo "  $f"
	else
		why="not written: see the report's messages above"
		[[ $f == figures/distance_vs_gamma.pdf && -z $DISTANCE_STORE ]] && why="not made: pass DISTANCE_STORE"
		echo "  $f: $why"
		missing=1
	fi
done
exit "$missing"
