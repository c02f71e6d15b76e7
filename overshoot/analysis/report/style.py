"""One style for every number and name the reports print: thousands separators, a true minus sign, accuracy
in %, the paper's task labels, the families' and methods' display names."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from overshoot.analysis.results import PAPER_LABEL, task_label
from overshoot.config import methods

MINUS = "\u2212"
DASH = "–"
BETTER, WORSE = "↑", "↓"
NOT_PAPER = "not a paper task"

__all__ = [
    "BETTER",
    "DASH",
    "MINUS",
    "NOT_PAPER",
    "WORSE",
    "family_label",
    "format_mean_ci",
    "interval_cell",
    "method_label",
    "metric_factor",
    "metric_header",
    "num",
    "paper_label",
    "seed_list",
    "signed",
    "split_label",
    "task_label",
]


def signed(x: float, digits: int = 1) -> str:
    """A number with thousands separators and a true minus sign (U+2212); '–' when not finite."""
    if not math.isfinite(x):
        return DASH
    return f"{x:,.{digits}f}".replace("-", MINUS)


def num(x: Any, digits: int = 1) -> str:
    """An integer as '16,906', a float as :func:`signed`; '–' for a missing value."""
    if x is None or x is pd.NA or (isinstance(x, float) and not math.isfinite(x)):
        return DASH
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return f"{int(x):,}".replace("-", MINUS)
    return signed(float(x), digits)


def _decimals(half_width: float, mean: float) -> int:
    """Decimals that show two significant digits of the interval (4 significant of the mean without one)."""
    if math.isfinite(half_width) and half_width > 0:
        return int(min(6, max(0, 1 - math.floor(math.log10(half_width)))))
    if math.isfinite(mean) and mean != 0:
        return int(min(6, max(0, 3 - math.floor(math.log10(abs(mean))))))
    return 3


def format_mean_ci(mean: float, half_width: float, digits: int | None = None) -> str:
    """'m ± h' (just 'm' without an interval, '–' without a mean)."""
    if not math.isfinite(mean):
        return DASH
    d = _decimals(half_width, mean) if digits is None else digits
    if not math.isfinite(half_width):
        return signed(mean, d)
    return f"{signed(mean, d)} ± {half_width:,.{d}f}"


def interval_cell(mean: float, low: float, high: float, digits: int = 1) -> str:
    """'m [lo, hi]' ('m' without an interval, '–' without a mean)."""
    if not math.isfinite(mean):
        return DASH
    if not (math.isfinite(low) and math.isfinite(high)):
        return signed(mean, digits)
    return f"{signed(mean, digits)} [{signed(low, digits)}, {signed(high, digits)}]"


def family_label(family: str) -> str:
    """'SGD', 'Adam' (a family the registry does not know keeps its name)."""
    f = methods.FAMILIES.get(family)
    return f.label if f is not None else family


def paper_label(task: str) -> str:
    """The paper's label of a task ('MLP-CA'), else 'not a paper task'."""
    return PAPER_LABEL.get(task, NOT_PAPER)


def split_label(method: str) -> tuple[str, float]:
    """The optimizer and gamma of a method label: 'sgd_os-g5' -> ('sgd_os', 5.0); any other label (a
    baseline, a user's optimizer) is its optimizer, at gamma 0."""
    opt, sep, g = method.rpartition("-g")
    if sep and methods.is_overshoot(opt):
        try:
            return opt, float(g)
        except ValueError:
            pass
    return method, 0.0


def method_label(method: str, family_baseline: str | None = None) -> str:
    """'SGDO γ=5' of 'sgd_os-g5'; a gamma-0 overshoot run standing in for its baseline says so."""
    opt, gamma = split_label(method)
    label = methods.display_label(opt, gamma)
    m = methods.METHODS.get(opt)
    if family_baseline == method and m is not None and m.overshoot:
        label += f" (= {methods.METHODS[m.baseline].display})"
    return label


def metric_factor(metric: str, scale: float) -> float:
    """What a stored metric is multiplied by when shown: accuracy in %, a loss by its task's scale (MSE
    x100 on MLP-CA, as the paper)."""
    return 100.0 if metric == "accuracy" else float(scale)


def metric_header(metric: str, scale: float, task: str, split: str = "test") -> str:
    """'test acc. %', 'test MSE ×100', 'val loss'."""
    if metric == "accuracy":
        return f"{split} acc. %"
    what = f"{split} MSE" if task == "housing" else f"{split} {metric}"
    return what + ("" if scale == 1 else f" ×{scale:g}")


def seed_list(seeds: Sequence[int]) -> str:
    """'10 (10, 20, …, 100)' for an arithmetic run of seeds, else '3 (1, 2, 5)'."""
    s = sorted(set(seeds))
    if len(s) > 3 and all(b - a == s[1] - s[0] for a, b in itertools.pairwise(s)):
        return f"{len(s)} ({s[0]}, {s[1]}, …, {s[-1]})"
    return f"{len(s)} (" + ", ".join(map(str, s)) + ")"
