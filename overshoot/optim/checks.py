"""The optimizers' default overshoot factor and argument checks, free of torch.

SGDO, AdamO and Overshoot check their arguments here, and the run config (``overshoot.config.compose``)
refuses a bad setting with the same checks, before anything imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DEFAULT_GAMMA",
    "ArgumentError",
    "check_adamo",
    "check_betas",
    "check_delay",
    "check_eps",
    "check_nonnegative",
    "check_sgdo",
]

DEFAULT_GAMMA = 5.0  # the overshoot factor when none is given (SGDO, AdamO, Overshoot, the run config)


class ArgumentError(ValueError):
    """An invalid optimizer argument, in torch's wording; ``bound`` is the allowed range as it follows
    "must be" (``">= 0"``, ``"in [0, 1)"``), ``index`` the position within a sequence argument (betas)."""

    def __init__(self, message: str, bound: str, index: int | None = None) -> None:
        super().__init__(message)
        self.bound = bound
        self.index = index


def check_nonnegative(**values: float) -> None:
    """Raise ArgumentError for the first value that is not >= 0 (NaN included)."""
    for key, value in values.items():
        if not value >= 0.0:
            label = "learning rate" if key == "lr" else f"{key} value"
            raise ArgumentError(f"Invalid {label}: {value} (allowed range: {key} >= 0)", ">= 0")


def check_eps(eps: float) -> None:
    """Raise ArgumentError unless ``eps > 0``."""
    if not eps > 0.0:
        raise ArgumentError(f"Invalid epsilon value: {eps} (allowed range: eps > 0)", "> 0")


def check_betas(betas: Sequence[float]) -> None:
    """Raise ArgumentError unless ``betas`` is a pair, each in [0, 1)."""
    if len(betas) != 2:
        raise ArgumentError(
            f"Invalid betas: {betas} (expected a pair (beta1, beta2), each in [0, 1))", "a pair in [0, 1)"
        )
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ArgumentError(
                f"Invalid beta parameter at index {i}: {b} (allowed range: 0 <= betas[{i}] < 1)",
                "in [0, 1)",
                i,
            )


def check_delay(delay: int | None) -> None:
    """Raise ArgumentError unless the ramp delay is >= 0 or None (no ramp)."""
    if delay is not None and not delay >= 0:
        raise ArgumentError(
            f"Invalid delay value: {delay} (allowed range: delay >= 0, or None for no ramp)", ">= 0"
        )


def check_sgdo(lr: float, gamma: float, momentum: float, dampening: float, weight_decay: float) -> None:
    """Raise ArgumentError for an invalid SGDO hyperparameter."""
    check_nonnegative(lr=lr, gamma=gamma, momentum=momentum, weight_decay=weight_decay)
    if gamma > 0 and not momentum > 0:
        raise ArgumentError(
            f"Invalid momentum value: {momentum} (allowed range: momentum > 0 when gamma > 0)", "> 0"
        )
    if gamma > 0 and dampening != 0:
        raise ArgumentError(
            f"Invalid dampening value: {dampening} (allowed: dampening = 0 when gamma > 0)", "0"
        )
    if not 0.0 <= dampening <= 1.0:
        raise ArgumentError(
            f"Invalid dampening value: {dampening} (allowed range: 0 <= dampening <= 1)", "in [0, 1]"
        )


def check_adamo(
    lr: float,
    betas: Sequence[float],
    eps: float,
    weight_decay: float,
    gamma: float,
    delay: int | None,
    exact: bool,
) -> None:
    """Raise ArgumentError for an invalid AdamO hyperparameter."""
    check_nonnegative(lr=lr, weight_decay=weight_decay, gamma=gamma)
    check_eps(eps)
    check_betas(betas)
    check_delay(delay)
    if gamma > 0 and betas[0] == 0 and not exact:
        raise ArgumentError(
            "Invalid beta parameter at index 0: 0.0 (allowed range with gamma > 0: 0 < betas[0] < 1; "
            "or pass exact=True)",
            "in (0, 1) with gamma > 0",
            0,
        )
