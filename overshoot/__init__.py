"""Overshoot optimizers (SGDO, AdamO) and the overshoot-bench harness (arXiv 2501.09556)."""

from overshoot.optim import SGDO, AdamO

__all__ = ["SGDO", "AdamO", "__version__"]
__version__ = "0.1.0"
