"""Overshoot optimizers (SGDO, AdamO) and the overshoot-bench harness (arXiv 2501.09556)."""

from overshoot.optim import AdamO, SGDO

__all__ = ["SGDO", "AdamO", "__version__"]
__version__ = "0.1.0"
