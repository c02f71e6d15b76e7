"""Two-model (definitional) forms of SGDO and AdamO (arXiv 2501.09556), for tests and users.

A base copy and an overshoot copy of the parameters are each driven by a stock torch optimizer. Before
every step the overshoot copy is re-synced to the base weights; both optimizers then take the same
gradient (computed by the caller at the overshoot weights), the base one with lr ``eta`` and the
overshoot one with lr ``(1 + gamma_t) * eta``. For SGD with momentum this gives
``theta_{t+1} = theta_t - eta*b_t`` and ``theta'_{t+1} = theta_{t+1} - gamma*eta*b_t``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor
from torch.optim import Optimizer

from overshoot.optim._base import ramp
from overshoot.optim.checks import DEFAULT_GAMMA

__all__ = ["TwoModel", "TwoModelAdam", "TwoModelSGD"]


class TwoModel:
    """Base and overshoot copies of ``params``, each stepped by ``make_optimizer(copy)``.

    ``base_optimizer`` is the one to hand to an LR scheduler; the overshoot optimizer's lr follows it as
    ``(1 + gamma_t) * lr`` with ``gamma_t = ramp(gamma, t, delay)`` (``delay=None``: constant gamma).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        make_optimizer: Callable[[list[Tensor]], Optimizer],
        gamma: float,
        delay: int | None = None,
    ) -> None:
        params = list(params)
        self.base = [p.detach().clone() for p in params]
        self.overshoot = [p.detach().clone() for p in params]
        self.base_optimizer = make_optimizer(self.base)
        self.overshoot_optimizer = make_optimizer(self.overshoot)
        self.gamma = gamma
        self.delay = delay
        self.t = 0

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor]) -> None:
        """One step with ``grads`` taken at the overshoot weights (``self.overshoot``)."""
        self.t += 1
        gamma_t = float(ramp(self.gamma, self.t, self.delay))
        for b, o, g in zip(self.base, self.overshoot, grads, strict=True):
            o.copy_(b)
            b.grad = g.detach().clone()
            o.grad = g.detach().clone()
        groups = zip(self.base_optimizer.param_groups, self.overshoot_optimizer.param_groups, strict=True)
        for bg, og in groups:
            og["lr"] = (1 + gamma_t) * bg["lr"]
        self.base_optimizer.step()
        self.overshoot_optimizer.step()


class TwoModelSGD(TwoModel):
    """Two-model SGD with momentum and overshoot (torch.optim.SGD for both copies)."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float,
        gamma: float,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lambda ps: torch.optim.SGD(
                ps, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=False
            ),
            gamma,
        )


class TwoModelAdam(TwoModel):
    """Two-model AdamW with overshoot (torch.optim.AdamW for both copies), optional delay ramp."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        gamma: float = DEFAULT_GAMMA,
        delay: int | None = 50,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params,
            lambda ps: torch.optim.AdamW(
                ps, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, foreach=False
            ),
            gamma,
            delay,
        )
