"""Overshoot optimizers (SGDO, AdamO) and the overshoot-bench harness (arXiv 2501.09556)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from overshoot.optim import SGDO, AdamO, Overshoot

__all__ = ["SGDO", "AdamO", "Overshoot", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """SGDO, AdamO and Overshoot, imported on first use: ``import overshoot`` alone does not load torch (the
    console script handles a Ctrl-C during that slow import)."""
    if name in ("SGDO", "AdamO", "Overshoot"):
        from overshoot import optim

        return getattr(optim, name)
    raise AttributeError(f"module 'overshoot' has no attribute {name!r}")
