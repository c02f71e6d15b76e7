"""What happened to one process's runs, and the one line of a bad setting: the CLI's bookkeeping, importable
without torch (``--help`` and bad input never import it)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING

from overshoot.config import methods

if TYPE_CHECKING:
    from overshoot.config.run import RunConfig


class Outcomes:
    """What happened to this process's runs: a count per outcome (completed, skipped, running elsewhere,
    bad input, ...) and every run's exit code."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.codes: list[int] = []
        self.errors: list[str] = []  # the one-line messages of bad input, in order

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    @property
    def interrupted(self) -> int | None:
        """143 when a run was stopped by SIGTERM, 130 by SIGINT, else None."""
        return 143 if 143 in self.codes else 130 if 130 in self.codes else None

    @property
    def exit_code(self) -> int:
        return max(self.codes, default=0)

    def summary(self) -> str | None:
        """'5 runs: 3 completed, 2 skipped' when there was more than one run."""
        n = sum(self.counts.values())
        if n <= 1:
            return None
        return f"{n} runs: " + ", ".join(f"{k_n} {k}" for k, k_n in sorted(self.counts.items()))


def bad_input(e: Exception, outcomes: Outcomes) -> int:
    """Print the one-line error of a bad setting; exit code 2."""
    print(f"overshoot-bench: error: {e}", file=sys.stderr, flush=True)
    outcomes.add("bad input")
    outcomes.errors.append(str(e))
    return 2


def run_label(run: RunConfig) -> str:
    """A run's label in messages and progress: task, method (gamma included) and seed, e.g.
    digits/sgd_os-g5/seed10."""
    return f"{run.task}/{methods.label(run.optimizer, run.gamma)}/seed{run.seed}"
