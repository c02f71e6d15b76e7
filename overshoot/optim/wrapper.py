"""Overshoot for any optimizer (``Overshoot``), and Schedule-Free optimizers evaluated at their averaged
weights (``ScheduleFreeEval``): wrappers that give a torch optimizer the ``base_weights()`` API of SGDO/AdamO.

Both share the wrapped optimizer's ``param_groups`` (a learning-rate scheduler built on the wrapper or on the
wrapped optimizer acts on the same groups) and keep the model's parameters at the point where gradients are
taken; ``with opt.base_weights():`` puts the point that is evaluated into them, and restores the training
point bit-identically afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from overshoot.optim._base import MODE_KEY, Mode, OvershootOptimizer, WeightsMode, ramp, resolve_gamma
from overshoot.optim.checks import check_delay, check_nonnegative

__all__ = ["Overshoot", "ScheduleFreeEval"]

WRAPPER_KEY = "wrapper"  # the wrapper's own entries in its state_dict (the wrapped one's under "optimizer")


class _Wrapper(WeightsMode, Optimizer):
    """An optimizer that drives another one (``self.optimizer``) and owns its ``param_groups`` jointly with
    it: torch's step hooks, ``zero_grad`` and lr schedulers work on either object."""

    optimizer: Optimizer
    _mode: Mode

    def __init__(self, optimizer: Optimizer, defaults: dict[str, Any]) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__} wraps a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self._mode = "overshoot"
        # torch's machinery (hooks, profiling); add_param_group adopts the wrapped optimizer's own groups
        super().__init__(list(optimizer.param_groups), {**optimizer.defaults, **defaults})

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        """The wrapped optimizer's param groups (the same list: a scheduler on either sees one lr)."""
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        """Ignored: ``Optimizer.__init__`` assigns an empty list before adopting the wrapped groups."""

    def _fill_group(self, group: dict[str, Any]) -> None:
        """Give a param group the wrapper's defaults it lacks, then check it."""
        for k, v in self.defaults.items():
            group.setdefault(k, v)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adopt one of the wrapped optimizer's groups, or add a new group to the wrapped optimizer."""
        if not any(param_group is g for g in self.optimizer.param_groups):
            self.optimizer.add_param_group(param_group)
            param_group = self.optimizer.param_groups[-1]
        self._fill_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The wrapped optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.optimizer!r})"

    # ----------------------------------------------------------------- mode
    def move_to_base(self) -> None:
        """Put the weights that are evaluated into the parameters. RuntimeError if they hold them already."""
        if self._mode == "base":
            raise RuntimeError("move_to_base() called twice: the parameters already hold the base weights")
        self._to_base()
        self._mode = "base"

    def move_to_overshoot(self) -> None:
        """Restore the training weights bit-identically. RuntimeError if the parameters hold them already."""
        if self._mode == "overshoot":
            raise RuntimeError(
                "move_to_overshoot() called twice: the parameters already hold the overshoot weights"
            )
        self._to_overshoot()
        self._mode = "overshoot"

    @contextlib.contextmanager
    def base_weights(self) -> Iterator[None]:
        """Context manager: the parameters hold the base weights inside, the training weights after."""
        self.move_to_base()
        try:
            yield
        finally:
            self.move_to_overshoot()

    def _to_base(self) -> None:
        raise NotImplementedError

    def _to_overshoot(self) -> None:
        raise NotImplementedError

    def _params(self) -> list[Tensor]:
        """Every parameter, in the order of torch's state_dict indices."""
        return [p for g in self.param_groups for p in g["params"]]

    # ----------------------------------------------------------- state_dict
    def state_dict(self) -> dict[str, Any]:
        """``{"optimizer": the wrapped optimizer's state_dict, "wrapper": this wrapper's own state,
        "overshoot_mode": the mode}``."""
        return {
            "optimizer": self.optimizer.state_dict(),
            WRAPPER_KEY: self._own_state(),
            MODE_KEY: self._mode,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of ``state_dict()``'s form; the parameters must hold the mode it was taken in."""
        mode = state_dict.get(MODE_KEY, "overshoot")
        if mode not in ("overshoot", "base"):
            raise ValueError(f"Invalid {MODE_KEY} in state_dict: {mode!r} (allowed: 'overshoot', 'base')")
        if "optimizer" not in state_dict or WRAPPER_KEY not in state_dict:
            raise ValueError(
                f"not a state_dict of {type(self).__name__}: it has no 'optimizer'/'{WRAPPER_KEY}' entries "
                "(a wrapped optimizer's own state_dict loads with opt.optimizer.load_state_dict)"
            )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        for group in self.param_groups:  # groups saved before a key existed get the wrapper's default
            self._fill_group(group)
        self._load_own_state(state_dict[WRAPPER_KEY])
        self._mode = mode

    def _own_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_own_state(self, own: dict[str, Any]) -> None:
        raise NotImplementedError


class Overshoot(_Wrapper):
    r"""Overshoot (Kopal et al. 2025, arXiv 2501.09556) for any optimizer whose step is linear in its lr.

    Keeps the base weights :math:`\theta` the wrapped optimizer updates; the model's parameters hold the
    overshoot weights :math:`\theta' = \theta + \gamma_t \Delta_t` where gradients are taken, with
    :math:`\Delta_t = \theta_{t+1} - \theta_t` the wrapped optimizer's last update of the base. For SGD with
    momentum, AdamW (decoupled weight decay included), Lion, RAdam, ... this is the paper's two-model form
    (the overshoot model is the same optimizer at lr :math:`(1+\gamma)\eta`, re-synced to the base before
    each step). The factor ramps as AdamO's: :math:`\gamma_t = \mathrm{clip}(t - D, 0, \gamma)` with
    ``D = delay`` (``delay=None``: :math:`\gamma` from the first step). At ``gamma=0`` the parameters follow
    the bare optimizer bit for bit.

    Memory: one copy of the parameters (the base weights; SGDO and AdamO need none), plus one parameter's
    worth of scratch during ``step()`` and ``base_weights()``.

    Usage (a scheduler may be built on ``opt`` or on the wrapped optimizer: they share ``param_groups``)::

        opt = Overshoot(torch.optim.RAdam(model.parameters(), lr=1e-3), gamma=5)
        for x, y in loader:
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
            with torch.no_grad(), opt.base_weights():
                val_loss = evaluate(model)

    Args:
        optimizer: the optimizer to wrap (not itself an overshoot optimizer); its param groups get the keys
            ``gamma`` and ``delay`` (per group; ``add_param_group`` accepts ``overshoot=`` for ``gamma=``).
        gamma: overshoot factor, >= 0 (default ``checks.DEFAULT_GAMMA``; ``overshoot=`` is an alias).
        delay: steps without overshoot before the ramp, >= 0, or None for no ramp (default).

    A ``closure`` passed to ``step()`` is evaluated once, at the overshoot weights; the wrapped optimizer
    then steps without it.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        gamma: float | None = None,
        delay: int | None = None,
        *,
        overshoot: float | None = None,
    ) -> None:
        if isinstance(optimizer, (OvershootOptimizer, _Wrapper)):
            raise ValueError(f"{type(optimizer).__name__} already moves its weights: wrap a plain optimizer")
        self._steps = 0
        self._offset = False  # whether some parameter may differ from its base weights
        self._bases: dict[Tensor, Tensor] = {}
        super().__init__(optimizer, {"gamma": resolve_gamma(gamma, overshoot), "delay": delay})

    def _fill_group(self, group: dict[str, Any]) -> None:
        if "overshoot" in group:
            alias = group.pop("overshoot")
            group["gamma"] = resolve_gamma(group.get("gamma"), alias, default=alias)
        super()._fill_group(group)
        gamma, delay = group["gamma"], group["delay"]
        if isinstance(gamma, Tensor):
            raise ValueError(f"Invalid gamma value: {gamma} (allowed: a Python number >= 0)")
        if delay is not None and not isinstance(delay, int):
            raise ValueError(f"Invalid delay value: {delay} (allowed: an integer >= 0, or None for no ramp)")
        check_nonnegative(gamma=gamma)
        check_delay(delay)

    @property
    def steps(self) -> int:
        """The number of steps taken (the ramp's ``t``)."""
        return self._steps

    def base(self, p: Tensor) -> Tensor:
        """The base weights of parameter ``p`` (``p`` itself before the first step); read-only view."""
        if self._mode == "base":
            return p
        return self._bases.get(p, p)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """One step: the wrapped optimizer updates the base weights with the gradients taken at the
        overshoot weights, then the parameters move to the new overshoot weights."""
        self._check_step_allowed()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params()
        if self._offset:  # the wrapped optimizer steps from the base weights
            for p in params:
                b = self._bases.get(p)
                if b is not None:
                    p.copy_(b)
        for p in params:  # a parameter's base weights begin where its overshoot weights are now
            if p not in self._bases:
                self._bases[p] = p.detach().clone()
        self.optimizer.step()
        self._steps += 1
        offset = False
        for group in self.param_groups:
            gamma_t = float(ramp(group["gamma"], self._steps, group["delay"]))
            for p in group["params"]:
                b = self._bases[p]
                if gamma_t == 0:
                    b.copy_(p)
                    continue
                delta = p - b  # Delta_t: the wrapped optimizer's update of the base
                b.copy_(p)
                p.add_(delta, alpha=gamma_t)
                offset = True
        self._offset = offset
        return loss

    def _swap(self) -> None:
        """Exchange the parameters' contents with the stored copies (the base weights, or in base mode the
        overshoot weights), bit-identically."""
        if not self._offset:
            return
        for p in self._params():
            b = self._bases.get(p)
            if b is not None:
                scratch = p.detach().clone()
                p.copy_(b)
                b.copy_(scratch)

    @torch.no_grad()
    def _to_base(self) -> None:
        self._swap()

    @torch.no_grad()
    def _to_overshoot(self) -> None:
        self._swap()

    def _own_state(self) -> dict[str, Any]:
        index = {p: i for i, p in enumerate(self._params())}
        return {
            "steps": self._steps,
            "offset": self._offset,
            "stored": {index[p]: b for p, b in self._bases.items() if p in index},
        }

    def _load_own_state(self, own: dict[str, Any]) -> None:
        params = self._params()
        stored = own.get("stored", {})
        if any(not 0 <= int(i) < len(params) for i in stored):
            raise ValueError("state_dict holds base weights for more parameters than the optimizer has")
        self._bases = {}
        for i, b in stored.items():
            p = params[int(i)]
            if b.shape != p.shape:
                raise ValueError(
                    f"state_dict's base weights of parameter {i} have shape {tuple(b.shape)}, "
                    f"the parameter {tuple(p.shape)}"
                )
            self._bases[p] = b.detach().to(device=p.device, dtype=p.dtype, copy=True)
        self._steps = int(own.get("steps", 0))
        self._offset = bool(own.get("offset", bool(self._bases)))


class ScheduleFreeEval(_Wrapper):
    """A Schedule-Free optimizer (``schedulefree.AdamWScheduleFree``, ``SGDScheduleFree``, ...: any with
    ``train()``/``eval()``) whose ``base_weights()`` are its averaged sequence x, where it is evaluated.

    The parameters hold y, where gradients are taken; ``with opt.base_weights():`` is the package's
    ``opt.eval()`` ... ``opt.train()``, except that y is restored bit-identically (a copy of the parameters
    is kept inside the block). The wrapped optimizer is put in train mode here.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not (callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))):
            raise TypeError(
                f"{type(optimizer).__name__} has no train()/eval(): not a Schedule-Free optimizer"
            )
        self._saved: list[Tensor] = []
        super().__init__(optimizer, {})
        optimizer.train()  # type: ignore[attr-defined]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """The wrapped optimizer's step (gradients taken at y)."""
        self._check_step_allowed()
        return self.optimizer.step(closure)

    @torch.no_grad()
    def _to_base(self) -> None:
        self._saved = [p.detach().clone() for p in self._params()]
        self.optimizer.eval()  # type: ignore[attr-defined]

    @torch.no_grad()
    def _to_overshoot(self) -> None:
        self.optimizer.train()  # type: ignore[attr-defined]
        if self._saved:  # (none after loading a state_dict taken in base mode: y is then recomputed)
            for p, y in zip(self._params(), self._saved, strict=True):
                p.copy_(y)  # train() recomputes y from x with rounding; the saved y is exact
        self._saved = []

    def _own_state(self) -> dict[str, Any]:
        return {}

    def _load_own_state(self, own: dict[str, Any]) -> None:
        """Nothing of its own: the mode travels in the wrapped optimizer's param groups."""
