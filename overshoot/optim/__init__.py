"""SGDO and AdamO: momentum optimizers with overshoot (arXiv 2501.09556), plus two-model references."""

from overshoot.optim.adamo import AdamO, adamo
from overshoot.optim.reference import TwoModel, TwoModelAdam, TwoModelSGD
from overshoot.optim.sgdo import SGDO, sgdo

__all__ = ["SGDO", "AdamO", "TwoModel", "TwoModelAdam", "TwoModelSGD", "adamo", "sgdo"]
