"""SGDO and AdamO: momentum optimizers with overshoot (arXiv 2501.09556), plus two-model references.

Functional updates live in their modules: ``overshoot.optim.sgdo.sgdo`` and ``overshoot.optim.adamo.adamo``.

Typical loop (gradients are taken at the overshoot weights the model holds; evaluate the base weights)::

    opt = AdamO(model.parameters(), lr=1e-3, gamma=5)  # or SGDO(..., lr=0.1, momentum=0.9, gamma=5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps)
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        sched.step()
        with torch.no_grad(), opt.base_weights():  # parameters hold the base weights inside
            val_loss = evaluate(model)

``AdamO(..., capturable=True)`` keeps step counts, lr and coefficients on the device (no host sync: its
step and base-weight round trip can be captured in a CUDA graph); the functional form is
``adamo(..., capturable=True)``, with ``adamo_base_offset`` for the base weights.

Any other optimizer whose step is linear in its lr gets overshoot from ``Overshoot(optimizer, gamma=5)`` (one
copy of the parameters); ``ScheduleFreeEval`` evaluates a Schedule-Free optimizer at its x sequence through
the same ``base_weights()``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from overshoot.optim import adamo, reference, sgdo
    from overshoot.optim.adamo import AdamO
    from overshoot.optim.reference import TwoModel, TwoModelAdam, TwoModelSGD
    from overshoot.optim.sgdo import SGDO
    from overshoot.optim.wrapper import Overshoot, ScheduleFreeEval

# each public name -> the module that defines it
_HOMES = {
    "SGDO": "sgdo",
    "AdamO": "adamo",
    "Overshoot": "wrapper",
    "ScheduleFreeEval": "wrapper",
    "TwoModel": "reference",
    "TwoModelAdam": "reference",
    "TwoModelSGD": "reference",
}
_MODULES = ("adamo", "reference", "sgdo")

__all__ = [
    "SGDO",
    "AdamO",
    "Overshoot",
    "ScheduleFreeEval",
    "TwoModel",
    "TwoModelAdam",
    "TwoModelSGD",
    "adamo",
    "reference",
    "sgdo",
]


def __getattr__(name: str) -> Any:
    """The optimizers and their modules, imported on first use: ``import overshoot.optim.checks`` (the
    argument checks the run config reuses) does not load torch."""
    if name in _MODULES:
        return importlib.import_module(f"overshoot.optim.{name}")
    if name in _HOMES:
        return getattr(importlib.import_module(f"overshoot.optim.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'overshoot.optim' has no attribute {name!r}")
