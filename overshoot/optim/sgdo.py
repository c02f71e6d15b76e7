"""SGD with overshoot (SGDO; Kopal et al. 2025, arXiv 2501.09556): the model holds the overshoot weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim import Optimizer

from overshoot.optim._base import (
    OvershootOptimizer,
    Scalar,
    default_to_fused,
    fused_kernels,
    is_zero,
    resolve_gamma,
)
from overshoot.optim.checks import check_sgdo

__all__ = ["SGDO", "sgdo"]


class SGDO(OvershootOptimizer):
    r"""SGD with momentum and overshoot (Kopal et al. 2025, arXiv 2501.09556).

    Gradients are taken at the overshoot weights :math:`\theta'`, which the model holds; the base weights
    :math:`\theta = \theta' + \gamma\eta b` (what is evaluated) are available through
    ``with opt.base_weights():``. With momentum buffer :math:`b_t = \mu b_{t-1} + g_t` (:math:`b_1 = g_1`),
    the base model follows :math:`\theta_{t+1} = \theta_t - \eta_t b_t` and
    :math:`\theta'_{t+1} = \theta_{t+1} - \gamma\eta_t b_t`. Each step computes
    :math:`\theta'_{t+1} = \theta'_t + \gamma\eta_{t-1} b_{t-1} - (1+\gamma)\eta_t b_t`, which for a constant
    learning rate is the paper's efficient form
    :math:`\theta'_{t+1} = \theta'_t - \eta\frac{\gamma}{\mu} g_t - \eta(1+\gamma-\frac{\gamma}{\mu}) b_t` and
    stays equal to the two-model form when a scheduler changes the learning rate. No extra state.

    ``gamma = 0`` is ``torch.optim.SGD(momentum=mu)``; ``gamma = mu`` is ``SGD(momentum=mu, nesterov=True)``.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate (default: 1e-3).
        momentum: momentum factor mu, > 0 when gamma > 0 (default: 0.9).
        gamma: overshoot factor, >= 0 (default: ``checks.DEFAULT_GAMMA``); ``overshoot=`` is an alias.
        dampening: dampening for momentum, must be 0 when gamma > 0 (default: 0).
        weight_decay: coupled L2 penalty added to the gradient at the overshoot weights, as in the public
            code (then SGDO and the two-model form differ slightly) (default: 0).
        maximize: maximize the objective instead of minimizing (default: False).
        foreach: use the foreach implementation (default: None: foreach unless the fused path is chosen).
        fused: use the fused Triton kernel (default: None: fused on CUDA for float32/float16/bfloat16
            parameters, foreach elsewhere). ``fused=True`` where it cannot run raises RuntimeError.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        momentum: float = 0.9,
        gamma: float | None = None,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        overshoot: float | None = None,
    ) -> None:
        gamma = resolve_gamma(gamma, overshoot)
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            gamma=gamma,
            dampening=dampening,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        _check_group(defaults)
        super().__init__(params, defaults)
        if fused:
            all_params = [p for g in self.param_groups for p in g["params"]]
            fused_kernels().check_fused_supported(all_params, "SGDO")

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_group(group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)

    def _add_base_offset(self, params_by_group: list[list[Tensor]]) -> None:
        buckets: dict[float, tuple[list[Tensor], list[Tensor]]] = {}
        for params in params_by_group:
            for p in params:
                st = self.state[p]
                ps, bs = buckets.setdefault(st["last_gamma"] * st["last_lr"], ([], []))
                ps.append(p)
                bs.append(st["momentum_buffer"])
        for coef, (ps, bs) in buckets.items():
            torch._foreach_add_(ps, bs, alpha=coef)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step (at the overshoot weights); ``closure`` re-evaluates the loss."""
        self._check_step_allowed()
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        any_offset = False
        for group in self.param_groups:
            gamma, lr = group["gamma"], group["lr"]
            # Parameters are bucketed by the lr and gamma of their previous step (normally one bucket).
            buckets: dict[tuple[float, float], tuple[list[Tensor], list[Tensor], list[Tensor | None]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("SGDO does not support sparse gradients")
                st = self.state[p]
                key = (st.get("last_lr", 0.0), st.get("last_gamma", 0.0))
                ps, gs, bs = buckets.setdefault(key, ([], [], []))
                ps.append(p)
                gs.append(p.grad)
                bs.append(st.get("momentum_buffer"))
            for (prev_lr, prev_gamma), (ps, gs, bs) in buckets.items():
                sgdo(
                    ps,
                    gs,
                    bs,
                    lr=lr,
                    prev_lr=prev_lr,
                    prev_gamma=prev_gamma,
                    momentum=group["momentum"],
                    gamma=gamma,
                    dampening=group["dampening"],
                    weight_decay=group["weight_decay"],
                    maximize=group["maximize"],
                    foreach=group["foreach"],
                    fused=group["fused"],
                )
                for p, b in zip(ps, bs, strict=True):
                    st = self.state[p]
                    st["momentum_buffer"] = b
                    st["last_lr"] = float(lr)
                    st["last_gamma"] = float(gamma)
            any_offset |= bool(buckets) and gamma != 0
        if any_offset:
            self._any_offset = True
        else:
            self._refresh_any_offset()
        return loss


def _check_group(group: dict[str, Any]) -> None:
    lr = group["lr"]
    if isinstance(lr, Tensor):
        raise ValueError("SGDO takes lr as a float (tensor lr: use the functional overshoot.optim.sgdo.sgdo)")
    check_sgdo(lr, group["gamma"], group["momentum"], group["dampening"], group["weight_decay"])


def sgdo(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    lr: Scalar,
    momentum: float,
    gamma: Scalar,
    prev_lr: Scalar | None = None,
    prev_gamma: Scalar | None = None,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
    foreach: bool | None = None,
    fused: bool | None = None,
) -> None:
    r"""Functional SGDO step, in place on ``params`` and ``momentum_buffer_list`` (``grads`` unchanged).

    Per parameter: ``g = grad (+ weight_decay * p)``; ``p += prev_gamma*prev_lr*b`` (back to base weights);
    ``b = momentum*b + (1-dampening)*g`` (``b = g`` where the buffer is None; new buffers are written into
    ``momentum_buffer_list``); ``p -= (1+gamma)*lr*b``.

    Args:
        lr, gamma, prev_lr, prev_gamma: Python floats, or (single-tensor path, ``foreach=False,
            fused=False``) tensors broadcastable against every parameter. Population mode stacks N models
            along dim 0 and passes e.g. ``gamma`` of shape ``[N, 1, ..., 1]`` (one factor per member).
            ``prev_lr`` is the learning rate of the previous step, i.e. the one that set the current offset
            ``prev_gamma*prev_lr*b``; None means ``lr`` (constant learning rate). ``prev_gamma`` likewise is
            the previous step's overshoot factor; None means ``gamma``.
        foreach, fused: implementation choice as in ``torch.optim.sgd``; None picks fused on CUDA (triton,
            float32/float16/bfloat16), else foreach for float lr/gamma, else single-tensor.
    """
    if prev_lr is None:
        prev_lr = lr
    if prev_gamma is None:
        prev_gamma = gamma
    tensor_args = any(isinstance(x, Tensor) for x in (lr, gamma, prev_lr, prev_gamma))
    if fused is None and foreach is None:
        if tensor_args:
            fused, foreach = False, False
        else:
            fused = default_to_fused(params, grads)
            foreach = not fused
    if (fused or foreach) and tensor_args:
        raise ValueError(
            "tensor lr/gamma/prev_lr/prev_gamma need the single-tensor path: pass foreach=False, fused=False"
        )
    if fused:
        impl = _fused_sgdo
    elif foreach:
        impl = _multi_tensor_sgdo
    else:
        impl = _single_tensor_sgdo
    impl(
        params,
        grads,
        momentum_buffer_list,
        lr=lr,
        undo=prev_gamma * prev_lr,
        momentum=momentum,
        gamma=gamma,
        dampening=dampening,
        weight_decay=weight_decay,
        maximize=maximize,
    )


def _single_tensor_sgdo(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    lr: Scalar,
    undo: Scalar,
    momentum: float,
    gamma: Scalar,
    dampening: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    step_c = -(1 + gamma) * lr
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        buf = momentum_buffer_list[i]
        if buf is None:
            buf = torch.clone(grad).detach()
            momentum_buffer_list[i] = buf
        else:
            if not is_zero(undo):
                _add_scaled(param, buf, undo)
            buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        _add_scaled(param, buf, step_c)


def _add_scaled(param: Tensor, x: Tensor, coef: Scalar) -> None:
    if isinstance(coef, Tensor):
        param.addcmul_(x, coef)
    else:
        param.add_(x, alpha=coef)


def _split_first(
    bufs: list[Tensor | None],
) -> tuple[list[int], list[int]]:
    have = [i for i, b in enumerate(bufs) if b is not None]
    new = [i for i, b in enumerate(bufs) if b is None]
    return have, new


def _multi_tensor_sgdo(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    lr: Scalar,
    undo: Scalar,
    momentum: float,
    gamma: Scalar,
    dampening: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    if not params:
        return
    lr, undo, gamma = float(lr), float(undo), float(gamma)
    step_c = -(1 + gamma) * lr
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, momentum_buffer_list],  # type: ignore[list-item]
        with_indices=True,
    )
    for (dev_params_, dev_grads_, dev_bufs_), indices in grouped.values():
        dev_params = cast(list[Tensor], dev_params_)
        dev_grads = cast(list[Tensor], dev_grads_)
        dev_bufs = cast(list[Tensor | None], dev_bufs_)
        if maximize:
            dev_grads = cast(list[Tensor], torch._foreach_neg(dev_grads))
        if weight_decay != 0:
            if maximize:
                torch._foreach_add_(dev_grads, dev_params, alpha=weight_decay)
            else:
                dev_grads = cast(list[Tensor], torch._foreach_add(dev_grads, dev_params, alpha=weight_decay))
        have, new = _split_first(dev_bufs)
        if have:
            ps = [dev_params[i] for i in have]
            gs = [dev_grads[i] for i in have]
            bs = [cast(Tensor, dev_bufs[i]) for i in have]
            if undo != 0:
                torch._foreach_add_(ps, bs, alpha=undo)
            torch._foreach_mul_(bs, momentum)
            torch._foreach_add_(bs, gs, alpha=1 - dampening)
            torch._foreach_add_(ps, bs, alpha=step_c)
        for i in new:
            buf = torch.clone(dev_grads[i]).detach()
            momentum_buffer_list[indices[i]] = buf
            dev_params[i].add_(buf, alpha=step_c)


def _fused_sgdo(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    *,
    lr: Scalar,
    undo: Scalar,
    momentum: float,
    gamma: Scalar,
    dampening: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    if not params:
        return
    lr, undo, gamma = float(lr), float(undo), float(gamma)
    for i, b in enumerate(momentum_buffer_list):
        if b is None and not grads[i].is_contiguous():
            raise ValueError("fused SGDO needs contiguous gradients")
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, momentum_buffer_list],  # type: ignore[list-item]
        with_indices=True,
    )
    for device, dtype in grouped:  # before any update, so an unsupported kind changes nothing
        fused_kernels().check_fused_supported_kind(device, dtype, "SGDO")
    for (dev_params_, dev_grads_, dev_bufs_), indices in grouped.values():
        dev_params = cast(list[Tensor], dev_params_)
        dev_grads = cast(list[Tensor], dev_grads_)
        dev_bufs = cast(list[Tensor | None], dev_bufs_)
        have, new = _split_first(dev_bufs)
        for first, idx in ((False, have), (True, new)):
            if not idx:
                continue
            bs: list[Tensor] = []
            for i in idx:
                b = dev_bufs[i]
                if b is None:
                    b = torch.empty_like(dev_params[i], memory_format=torch.contiguous_format)
                    momentum_buffer_list[indices[i]] = b
                bs.append(b)
            fused_kernels().sgdo_fused_update(
                [dev_params[i] for i in idx],
                [dev_grads[i] for i in idx],
                bs,
                first=first,
                undo=undo,
                momentum=momentum,
                damp1=1 - dampening,
                step_c=-(1 + gamma) * lr,
                weight_decay=weight_decay,
                maximize=maximize,
            )
