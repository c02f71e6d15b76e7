"""Shared machinery of the overshoot optimizers: the gamma alias, the delay ramp, base/overshoot mode,
state_dict (their argument checks are in ``overshoot.optim.checks``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from overshoot.optim.checks import DEFAULT_GAMMA

F64 = torch.float64
Scalar = float | Tensor
Mode = Literal["overshoot", "base"]
MODE_KEY = "overshoot_mode"
SAVED_KEY = "overshoot_weights"
GAMMA_MAX_KEY = "last_gamma_max"  # capturable state: host upper bound of the device-side last_gamma


def fused_kernels() -> ModuleType:
    """The Triton kernel module, imported on first use (keeps ``import overshoot`` free of triton)."""
    from overshoot.optim import _triton

    return _triton


def default_to_fused(params: list[Tensor], grads: list[Tensor]) -> bool:
    """For fused=None, foreach=None: True when every parameter is a contiguous CUDA tensor the fused kernels
    support (and so is its gradient)."""
    if not params or not all(
        p.device.type == "cuda" and p.is_contiguous() and g.is_contiguous()
        for p, g in zip(params, grads, strict=True)
    ):
        return False
    kernels = fused_kernels()
    return all(p.dtype in kernels.FUSED_DTYPES for p in params) and bool(
        kernels.fused_available(params[0].device)
    )


# the code of the wrapper torch._disable_dynamo puts around a function (creating one imports nothing)
_DISABLE_DYNAMO_CODE = getattr(torch._disable_dynamo(lambda: None), "__code__", None)


def _eager(method: Callable[..., Any]) -> Callable[..., Any]:
    """A ``torch.optim.Optimizer`` method that torch wraps in ``torch._disable_dynamo``, unwrapped while
    ``torch._dynamo`` is not imported. The wrapper only keeps dynamo from tracing the method, and imports
    ``torch._dynamo`` (seconds) on its first call; before that module is imported nothing can be compiling,
    so the plain method is the same call. Any other method is returned as it is."""
    if "torch._dynamo" in sys.modules or getattr(method, "__code__", None) is not _DISABLE_DYNAMO_CODE:
        return method
    return method.__wrapped__  # type: ignore[attr-defined,no-any-return]


def resolve_gamma(gamma: float | None, overshoot: float | None, default: float = DEFAULT_GAMMA) -> float:
    """Return the overshoot factor given as ``gamma=`` or its alias ``overshoot=``."""
    if gamma is not None and overshoot is not None and gamma != overshoot:
        raise ValueError(f"gamma={gamma} and overshoot={overshoot} disagree: pass only one of them")
    value = gamma if gamma is not None else overshoot
    return float(default if value is None else value)


def ramp(gamma: Scalar, step: float | Tensor, delay: int | None) -> Scalar:
    """Effective overshoot factor after ``step`` steps: ``clip(step - delay, 0, gamma)`` (paper's delay ramp).

    ``delay=None`` disables the ramp (``gamma`` from the first step on). Step 0 always gives 0. A tensor
    ``step`` gives a float64 tensor (broadcast against a tensor ``gamma``) computed without a host sync.
    """
    if isinstance(step, Tensor):
        t = step.to(F64)
        g = gamma.to(F64) if isinstance(gamma, Tensor) else gamma
        if delay is None:
            return (t >= 1).to(F64) * g
        cap_t = (t - delay).clamp(min=0.0)  # 0 at t = 0 for any delay >= 0
        return torch.minimum(g, cap_t) if isinstance(g, Tensor) else cap_t.clamp(max=g)
    if step < 1:
        return 0.0
    if delay is None:
        return gamma
    cap = max(step - delay, 0.0)
    if isinstance(gamma, Tensor):
        return torch.clamp(gamma, max=cap)
    return max(min(cap, gamma), 0.0)


def is_zero(value: float | Tensor) -> bool:
    """True when a Python number is 0 (tensors are never treated as zero: no host sync)."""
    return not isinstance(value, Tensor) and value == 0


def may_offset(st: dict[str, Any]) -> bool:
    """Whether a parameter's state may hold a nonzero overshoot offset, decided on the host: a device-side
    ``last_gamma`` (capturable state) is judged by its host upper bound ``last_gamma_max``."""
    last = st.get("last_gamma", 0.0)
    if last.__class__ is float:  # the host path's Python float
        return bool(last != 0.0)
    if isinstance(last, Tensor):
        return bool(st.get(GAMMA_MAX_KEY, 1.0) != 0.0)
    return bool(last != 0.0)


class WeightsMode:
    """Which weights the parameters hold: the point gradients are taken at, or the point that is evaluated.
    Shared by the overshoot optimizers and the wrappers of ``overshoot.optim.wrapper``."""

    _mode: Mode

    @property
    def mode(self) -> Mode:
        """``"overshoot"`` (the parameters hold the point gradients are taken at; ``step()`` allowed) or
        ``"base"`` (they hold the point that is evaluated)."""
        return self._mode

    def _check_step_allowed(self) -> None:
        if self._mode != "overshoot":
            raise RuntimeError(
                "step() called while the parameters hold the base weights: call move_to_overshoot() "
                "(or leave the `with opt.base_weights():` block) first"
            )


class OvershootOptimizer(WeightsMode, Optimizer):
    """Base class: keeps the parameters at the overshoot weights and moves them to the base weights on demand.

    Subclasses implement ``_add_base_offset(params_by_group)``, which adds ``base - overshoot`` in place to
    parameters whose last step left a nonzero offset, using only optimizer state written by ``step()``
    (``last_lr``, ``last_gamma``, ...), never the current param-group values, so a learning-rate scheduler
    stepping between ``step()`` and evaluation cannot corrupt the base weights.
    """

    _mode: Mode
    _any_offset: bool

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._mode = "overshoot"
        self._any_offset = False
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Raise ValueError for a param group's invalid hyperparameter (each optimizer's own rules)."""
        raise NotImplementedError

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (``overshoot=`` accepted as an alias of ``gamma=``) after checking its values."""
        if "overshoot" in param_group:
            param_group = dict(param_group)
            alias = param_group.pop("overshoot")
            param_group["gamma"] = resolve_gamma(param_group.get("gamma"), alias, default=alias)
        _eager(Optimizer.add_param_group)(self, param_group)
        self._check_group(self.param_groups[-1])

    def _offset_params(self) -> list[list[Tensor]]:
        """Per param group, the parameters whose state may hold a nonzero overshoot offset."""
        out: list[list[Tensor]] = []
        for group in self.param_groups:
            out.append([p for p in group["params"] if may_offset(self.state.get(p, {}))])
        return out

    def _refresh_any_offset(self) -> None:
        self._any_offset = any(may_offset(s) for s in self.state.values())

    def _add_base_offset(self, params_by_group: list[list[Tensor]]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def move_to_base(self) -> None:
        """Put the base weights into the parameters (the overshoot weights are kept in the state).

        Raises RuntimeError if the parameters already hold the base weights.
        """
        if self._mode == "base":
            raise RuntimeError("move_to_base() called twice: the parameters already hold the base weights")
        self._mode = "base"
        if not self._any_offset:
            return
        params_by_group = self._offset_params()
        flat = [p for ps in params_by_group for p in ps]
        if not flat:
            return
        saved = [torch.empty_like(p) for p in flat]
        torch._foreach_copy_(saved, flat)  # exact copy, one fused launch
        for p, s in zip(flat, saved, strict=True):
            self.state[p][SAVED_KEY] = s
        self._add_base_offset(params_by_group)

    @torch.no_grad()
    def move_to_overshoot(self) -> None:
        """Restore the overshoot weights saved by ``move_to_base()`` bit-identically.

        Raises RuntimeError if the parameters already hold the overshoot weights.
        """
        if self._mode == "overshoot":
            raise RuntimeError(
                "move_to_overshoot() called twice: the parameters already hold the overshoot weights"
            )
        params, saved = [], []
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st is not None and SAVED_KEY in st:
                    params.append(p)
                    saved.append(st.pop(SAVED_KEY))
        if params:
            torch._foreach_copy_(params, saved)
        self._mode = "overshoot"

    @contextlib.contextmanager
    def base_weights(self) -> Iterator[None]:
        """Context manager: the parameters hold the base weights inside, the overshoot weights after.

        Restoration is bit-identical. Costs nothing when no parameter carries an overshoot offset
        (e.g. every group has gamma == 0).
        """
        self.move_to_base()
        try:
            yield
        finally:
            self.move_to_overshoot()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of the parameters, as ``torch.optim.Optimizer.zero_grad``."""
        _eager(Optimizer.zero_grad)(self, set_to_none)

    # ----------------------------------------------------------- state_dict
    def state_dict(self) -> dict[str, Any]:
        """The torch state dict plus the current mode under ``"overshoot_mode"``."""
        sd = _eager(Optimizer.state_dict)(self)
        sd[MODE_KEY] = self._mode
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict (including the mode it was taken in); parameters must match that mode."""
        mode = state_dict.get(MODE_KEY, "overshoot")
        if mode not in ("overshoot", "base"):
            raise ValueError(f"Invalid {MODE_KEY} in state_dict: {mode!r} (allowed: 'overshoot', 'base')")
        _eager(Optimizer.load_state_dict)(self, state_dict)
        for st in self.state.values():
            step = st.get("step")
            if isinstance(step, Tensor) and step.device.type != "cpu":
                st["step"] = step.to("cpu", torch.float32)  # host-side step: no device sync per step
        self._mode = mode
        self._refresh_any_offset()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_mode", "overshoot")
        self.__dict__.setdefault("_any_offset", False)
