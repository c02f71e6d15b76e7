"""SGDO and AdamO: momentum optimizers with overshoot (arXiv 2501.09556), plus two-model references.

Functional updates live in their modules: ``overshoot.optim.sgdo.sgdo`` and ``overshoot.optim.adamo.adamo``.
"""

from overshoot.optim import adamo, reference, sgdo
from overshoot.optim.adamo import AdamO
from overshoot.optim.reference import TwoModel, TwoModelAdam, TwoModelSGD
from overshoot.optim.sgdo import SGDO

__all__ = ["SGDO", "AdamO", "TwoModel", "TwoModelAdam", "TwoModelSGD", "adamo", "reference", "sgdo"]
