"""AdamW with overshoot (AdamO): paper.md section 3, one weight set (the overshoot weights) in the model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim import Optimizer

from overshoot.optim._base import OvershootOptimizer, default_to_fused, fused_kernels, is_zero, resolve_gamma

__all__ = ["AdamO", "adamo", "ramp"]

Scalar = float | Tensor

# How far the default (paper) form drifts from two-model Adam with the same ramp, measured by
# tests/test_optim_adamo.py::test_default_close_to_two_model_adam (float64 MLP on random regression data,
# gamma 5, delay 50, weight_decay 0): max |AdamO - two-model| over all weights and steps, divided by the
# largest change of a base weight, was 1.3e-2 at lr 1e-2 over 300 steps (1.0e-2 over 100 steps) and
# 5.6e-3 at lr 1e-3 over 300 steps. The exact form (exact=True) matches to rounding (< 1e-12).
DEFAULT_FORM_TOLERANCE = 2e-2


def ramp(gamma: Scalar, step: float, delay: int | None) -> Scalar:
    """Effective overshoot factor after ``step`` steps: ``clip(step - delay, 0, gamma)`` (paper's delay ramp).

    ``delay=None`` disables the ramp (``gamma`` from the first step on). Step 0 always gives 0.
    """
    if step < 1:
        return 0.0
    if delay is None:
        return gamma
    cap = max(step - delay, 0.0)
    if isinstance(gamma, Tensor):
        return torch.clamp(gamma, max=cap)
    return max(min(cap, gamma), 0.0)


class AdamO(OvershootOptimizer):
    r"""AdamW with overshoot (Kopal et al. 2025, arXiv 2501.09556).

    The model holds the overshoot weights :math:`\theta'` at which gradients are taken; the base weights
    :math:`\theta = \theta' + \eta\gamma_t m_t / (\mathrm{bc1}_t d_t)` are available through
    ``with opt.base_weights():`` (:math:`d_t = \sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon`). The effective
    factor ramps up as :math:`\gamma_t = \mathrm{clip}(t - D, 0, \gamma)` with ``D = delay`` (the paper's
    default 50; ``delay=None``: no ramp).

    Default (``exact=False``): the paper's efficient form, per step
    :math:`\theta' \leftarrow \theta'(1-\eta\lambda) - [\eta_t(1+\gamma_t) m_t - \eta_{t-1}\gamma_{t-1}
    m_{t-1}] / (\mathrm{bc1}_t d_t)`, which approximates two-model Adam (the undo term uses the current
    bias correction and denominator); it drifts from it by about 1% of the weight change
    (``DEFAULT_FORM_TOLERANCE``).
    ``exact=True``: first undo the previous offset with the previous denominator, then take the AdamW step
    with lr :math:`(1+\gamma_t)\eta`; equal to two-model Adam (``overshoot.optim.reference.TwoModelAdam``)
    to rounding when ``weight_decay = 0``. ``gamma = 0`` is ``torch.optim.AdamW``.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate (default: 1e-3).
        betas: (beta1, beta2), each in [0, 1); beta1 > 0 for the default form with gamma > 0
            (default: (0.9, 0.999)).
        eps: term added to the denominator, > 0 (default: 1e-8).
        weight_decay: decoupled weight decay, as AdamW (default: 1e-2).
        gamma: overshoot factor, >= 0 (default: 5); ``overshoot=`` is accepted as an alias.
        delay: steps without overshoot before the ramp, >= 0 or None for no ramp (default: 50).
        amsgrad: use the AMSGrad variant (default: False).
        maximize: maximize the objective instead of minimizing (default: False).
        foreach: use the foreach implementation (default: None).
        fused: use the fused Triton kernel (default: None: fused on CUDA for float32/float16/bfloat16
            parameters, foreach elsewhere). ``fused=True`` where it cannot run raises RuntimeError.
        exact: use the exact form instead of the paper's efficient form (default: False).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        gamma: float | None = None,
        delay: int | None = 50,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        exact: bool = False,
        overshoot: float | None = None,
    ) -> None:
        gamma = resolve_gamma(gamma, overshoot, default=5.0)
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            gamma=gamma,
            delay=delay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            exact=exact,
        )
        _check_group(defaults)
        super().__init__(params, defaults)
        if fused:
            fused_kernels().check_fused_supported(
                [p for g in self.param_groups for p in g["params"]], "AdamO"
            )

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_group(group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            group.setdefault("exact", False)

    def _add_base_offset(self, params_by_group: list[list[Tensor]]) -> None:
        for group, params in zip(self.param_groups, params_by_group, strict=True):
            beta1, beta2 = group["betas"]
            buckets: dict[tuple[float, float, float], tuple[list[Tensor], list[Tensor], list[Tensor]]] = {}
            if not params:
                continue
            steps = torch.stack([self.state[p]["step"] for p in params]).tolist()  # CPU: no device sync
            for p, step in zip(params, steps, strict=True):
                st = self.state[p]
                key = (step, st["last_lr"], st["last_gamma"])
                ps, ms, vs = buckets.setdefault(key, ([], [], []))
                ps.append(p)
                ms.append(st["exp_avg"])
                vs.append(st["max_exp_avg_sq"] if group["amsgrad"] else st["exp_avg_sq"])
            for (step, lr, gamma), (ps, ms, vs) in buckets.items():
                denom = torch._foreach_sqrt(vs)
                torch._foreach_div_(denom, (1 - beta2**step) ** 0.5)
                torch._foreach_add_(denom, group["eps"])
                torch._foreach_addcdiv_(ps, ms, denom, value=lr * gamma / (1 - beta1**step))

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
            beta1, beta2 = group["betas"]
            lr, gamma, delay = group["lr"], group["gamma"], group["delay"]
            # Parameters are bucketed by the lr and gamma of their previous step (normally one bucket).
            buckets: dict[tuple[float, float], tuple[list[Any], ...]] = {}
            state = self.state
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise RuntimeError("AdamO does not support sparse gradients")
                st = state[p]
                if len(st) == 0:
                    st["step"] = torch.tensor(0.0, dtype=torch.float32)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if group["amsgrad"]:
                        st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["last_lr"] = 0.0
                    st["last_gamma"] = 0.0
                key = (st["last_lr"], st["last_gamma"])
                lists = buckets.get(key)
                if lists is None:
                    lists = buckets[key] = ([], [], [], [], [], [], [])
                lists[0].append(p)
                lists[1].append(grad)
                lists[2].append(st["exp_avg"])
                lists[3].append(st["exp_avg_sq"])
                if group["amsgrad"]:
                    lists[4].append(st["max_exp_avg_sq"])
                lists[5].append(st["step"])
                lists[6].append(st)
            for (prev_lr, prev_gamma), (ps, gs, ms, vs, xs, steps, sts) in buckets.items():
                adamo(
                    ps,
                    gs,
                    ms,
                    vs,
                    xs,
                    steps,
                    lr=lr,
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    gamma=gamma,
                    delay=delay,
                    prev_lr=prev_lr,
                    prev_gamma=prev_gamma,
                    exact=group["exact"],
                    amsgrad=group["amsgrad"],
                    maximize=group["maximize"],
                    foreach=group["foreach"],
                    fused=group["fused"],
                )
                lr_f = float(lr)
                ramped: dict[float, float] = {}
                for st, step in zip(sts, torch.stack(steps).tolist(), strict=True):
                    r = ramped.get(step)
                    if r is None:
                        r = ramped[step] = float(ramp(gamma, step, delay))
                        any_offset |= r != 0.0
                    st["last_lr"] = lr_f
                    st["last_gamma"] = r
        if any_offset:
            self._any_offset = True
        else:
            self._refresh_any_offset()
        return loss


def _check_group(group: dict[str, Any]) -> None:
    lr = group["lr"]
    if isinstance(lr, Tensor):
        raise ValueError(
            "AdamO takes lr as a float (tensor lr: use the functional overshoot.optim.adamo.adamo)"
        )
    if not lr >= 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (allowed range: lr >= 0)")
    eps = group["eps"]
    if not eps > 0.0:
        raise ValueError(f"Invalid epsilon value: {eps} (allowed range: eps > 0)")
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas} (expected a pair (beta1, beta2), each in [0, 1))")
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b} (allowed range: 0 <= betas[{i}] < 1)")
    wd = group["weight_decay"]
    if not wd >= 0.0:
        raise ValueError(f"Invalid weight_decay value: {wd} (allowed range: weight_decay >= 0)")
    gamma = group["gamma"]
    if not gamma >= 0.0:
        raise ValueError(f"Invalid gamma value: {gamma} (allowed range: gamma >= 0)")
    delay = group["delay"]
    if delay is not None and not delay >= 0:
        raise ValueError(f"Invalid delay value: {delay} (allowed range: delay >= 0, or None for no ramp)")
    if gamma > 0 and betas[0] == 0 and not group["exact"]:
        raise ValueError(
            "Invalid beta parameter at index 0: 0.0 (allowed range with gamma > 0: 0 < betas[0] < 1; "
            "or pass exact=True)"
        )


def adamo(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    gamma: Scalar,
    delay: int | None = 50,
    prev_lr: Scalar | None = None,
    prev_gamma: Scalar | None = None,
    exact: bool = False,
    amsgrad: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
    fused: bool | None = None,
) -> None:
    r"""Functional AdamO step, in place on params, moments and steps (``grads`` are not modified).

    Per parameter, with ``t`` the step count after incrementing, ``g_t = ramp(gamma, t, delay)`` and
    ``g_p = prev_gamma`` (default ``ramp(gamma, t-1, delay)``), ``d = sqrt(v)/sqrt(1-beta2^t) + eps``:

    - default form: ``p *= 1 - lr*weight_decay``; update m, v;
      ``p -= [(lr*(1+g_t) - prev_lr*g_p/beta1)*m + prev_lr*g_p*(1-beta1)/beta1*grad] / (bc1_t*d)``
      (i.e. ``p -= [lr*(1+g_t)*m_t - prev_lr*g_p*m_{t-1}] / (bc1_t*d_t)``);
    - ``exact=True``: ``p += prev_lr*g_p*m_{t-1}/(bc1_{t-1}*d_{t-1})`` (back to the base weights);
      ``p *= 1 - lr*weight_decay``; update m, v; ``p -= lr*(1+g_t)*m_t/(bc1_t*d_t)``.

    Args:
        lr, gamma, prev_lr, prev_gamma: Python floats, or (single-tensor path, ``foreach=False,
            fused=False``) tensors broadcastable against every parameter. Population mode stacks N models
            along dim 0 and passes e.g. ``gamma`` of shape ``[N, 1, ..., 1]`` (one factor per member).
            ``prev_lr`` / ``prev_gamma`` are the learning rate / effective factor of the previous step (the
            ones that set the current offset); None means ``lr`` / the ramp value at step ``t-1``.
        state_steps: float tensors on the CPU holding the step counts (torch's default placement).
        foreach, fused: implementation choice as in ``torch.optim.adam``; None picks fused on CUDA (triton,
            float32/float16/bfloat16), else foreach for float lr/gamma, else single-tensor.
    """
    if prev_lr is None:
        prev_lr = lr
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
    impl = _fused_adamo if fused else _multi_tensor_adamo if foreach else _single_tensor_adamo
    impl(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        gamma=gamma,
        delay=delay,
        prev_lr=prev_lr,
        prev_gamma=prev_gamma,
        exact=exact,
        amsgrad=amsgrad,
        maximize=maximize,
    )


def _coefficients(
    step: float,
    *,
    lr: Scalar,
    prev_lr: Scalar,
    gamma: Scalar,
    prev_gamma: Scalar | None,
    delay: int | None,
    beta1: float,
    beta2: float,
    exact: bool,
) -> tuple[Scalar, Scalar, Scalar, float, float]:
    """(cm, cg, undo, bc2_sqrt, bc2p_sqrt) for one step: ``p -= (cm*m + cg*g)/d``, ``p += undo*m/d_prev``."""
    g_t = ramp(gamma, step, delay)
    g_p = ramp(gamma, step - 1, delay) if prev_gamma is None else prev_gamma
    if step <= 1:
        g_p = 0.0
    bc1 = 1 - beta1**step
    bc2_sqrt = (1 - beta2**step) ** 0.5
    bc2p_sqrt = (1 - beta2 ** (step - 1)) ** 0.5
    if exact:
        undo: Scalar = 0.0 if is_zero(g_p) else prev_lr * g_p / (1 - beta1 ** (step - 1))
        return lr * (1 + g_t) / bc1, 0.0, undo, bc2_sqrt, bc2p_sqrt
    if is_zero(g_p):
        return lr * (1 + g_t) / bc1, 0.0, 0.0, bc2_sqrt, bc2p_sqrt
    if beta1 == 0:
        raise ValueError("the default AdamO form needs beta1 > 0 when gamma > 0 (or pass exact=True)")
    cm = (lr * (1 + g_t) - prev_lr * g_p / beta1) / bc1
    cg = prev_lr * g_p * (1 - beta1) / beta1 / bc1
    return cm, cg, 0.0, bc2_sqrt, bc2p_sqrt


def _single_tensor_adamo(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    gamma: Scalar,
    delay: int | None,
    prev_lr: Scalar,
    prev_gamma: Scalar | None,
    exact: bool,
    amsgrad: bool,
    maximize: bool,
) -> None:
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        vd = max_exp_avg_sqs[i] if amsgrad else exp_avg_sq
        state_steps[i] += 1
        step = float(state_steps[i])
        cm, cg, undo, bc2_sqrt, bc2p_sqrt = _coefficients(
            step, lr=lr, prev_lr=prev_lr, gamma=gamma, prev_gamma=prev_gamma, delay=delay,
            beta1=beta1, beta2=beta2, exact=exact,
        )  # fmt: skip
        if not is_zero(undo):
            denom_prev = (vd.sqrt() / bc2p_sqrt).add_(eps)
            _addcdiv(param, exp_avg, denom_prev, undo)
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
        denom = (vd.sqrt() / bc2_sqrt).add_(eps)
        _addcdiv(param, exp_avg, denom, -cm)
        if not is_zero(cg):
            _addcdiv(param, grad, denom, -cg)


def _addcdiv(param: Tensor, num: Tensor, denom: Tensor, coef: Scalar) -> None:
    if isinstance(coef, Tensor):
        param.addcmul_(num / denom, coef)
    else:
        param.addcdiv_(num, denom, value=coef)


def _multi_tensor_adamo(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    gamma: Scalar,
    delay: int | None,
    prev_lr: Scalar,
    prev_gamma: Scalar | None,
    exact: bool,
    amsgrad: bool,
    maximize: bool,
) -> None:
    if not params:
        return
    lr = float(lr)
    lists: list[list[Tensor]] = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    if amsgrad:
        lists.append(max_exp_avg_sqs)
    grouped = Optimizer._group_tensors_by_device_and_dtype(lists)  # type: ignore[arg-type]
    for dev_lists, _ in grouped.values():
        dev_params, dev_grads, dev_m, dev_v, dev_steps = (cast(list[Tensor], x) for x in dev_lists[:5])
        dev_vd = cast(list[Tensor], dev_lists[5]) if amsgrad else dev_v
        if maximize:
            dev_grads = cast(list[Tensor], torch._foreach_neg(dev_grads))
        torch._foreach_add_(dev_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        by_step: dict[float, tuple[Scalar, Scalar, Scalar, float, float]] = {}
        coefs = []
        for step in torch.stack(dev_steps).tolist():
            if step not in by_step:
                by_step[step] = _coefficients(
                    step, lr=lr, prev_lr=prev_lr, gamma=gamma, prev_gamma=prev_gamma,
                    delay=delay, beta1=beta1, beta2=beta2, exact=exact,
                )  # fmt: skip
            coefs.append(by_step[step])
        undo_idx = [i for i, c in enumerate(coefs) if c[2] != 0]
        if undo_idx:
            ps = [dev_params[i] for i in undo_idx]
            denom_prev = torch._foreach_sqrt([dev_vd[i] for i in undo_idx])
            torch._foreach_div_(denom_prev, [float(coefs[i][4]) for i in undo_idx])
            torch._foreach_add_(denom_prev, eps)
            torch._foreach_addcdiv_(
                ps, [dev_m[i] for i in undo_idx], denom_prev, [float(coefs[i][2]) for i in undo_idx]
            )
            del denom_prev
        if weight_decay != 0:
            torch._foreach_mul_(dev_params, 1 - lr * weight_decay)
        torch._foreach_lerp_(dev_m, dev_grads, 1 - beta1)
        torch._foreach_mul_(dev_v, beta2)
        torch._foreach_addcmul_(dev_v, dev_grads, dev_grads, 1 - beta2)
        if amsgrad:
            torch._foreach_maximum_(dev_vd, dev_v)
        denom = torch._foreach_sqrt(dev_vd)
        torch._foreach_div_(denom, [float(c[3]) for c in coefs])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(dev_params, dev_m, denom, [-float(c[0]) for c in coefs])
        cg_idx = [i for i, c in enumerate(coefs) if c[1] != 0]
        if cg_idx:
            torch._foreach_addcdiv_(
                [dev_params[i] for i in cg_idx],
                [dev_grads[i] for i in cg_idx],
                [denom[i] for i in cg_idx],
                [-float(coefs[i][1]) for i in cg_idx],
            )


def _fused_adamo(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Scalar,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    gamma: Scalar,
    delay: int | None,
    prev_lr: Scalar,
    prev_gamma: Scalar | None,
    exact: bool,
    amsgrad: bool,
    maximize: bool,
) -> None:
    if not params:
        return
    lr = float(lr)
    lists: list[list[Tensor]] = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    if amsgrad:
        lists.append(max_exp_avg_sqs)
    grouped = Optimizer._group_tensors_by_device_and_dtype(lists, with_indices=False)  # type: ignore[arg-type]
    for device, dtype in grouped:
        fused_kernels().check_fused_supported_kind(device, dtype, "AdamO")
    torch._foreach_add_(state_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
    for group_lists, _ in grouped.values():
        dev_params, dev_grads, dev_m, dev_v, dev_steps = (cast(list[Tensor], x) for x in group_lists[:5])
        dev_vmax = cast(list[Tensor], group_lists[5]) if amsgrad else None
        # one kernel launch per step count (normally one: every parameter stepped equally often)
        values = torch.stack(dev_steps).tolist()
        by_step: dict[float, list[int]] = {}
        if values[0] == min(values) == max(values):
            by_step[values[0]] = list(range(len(values)))
        else:
            for i, step in enumerate(values):
                by_step.setdefault(step, []).append(i)
        for step, idx in by_step.items():
            cm, cg, undo, bc2_sqrt, bc2p_sqrt = _coefficients(
                step, lr=lr, prev_lr=prev_lr, gamma=gamma, prev_gamma=prev_gamma, delay=delay,
                beta1=beta1, beta2=beta2, exact=exact,
            )  # fmt: skip
            whole = len(idx) == len(values)
            fused_kernels().adamo_fused_update(
                dev_params if whole else [dev_params[i] for i in idx],
                dev_grads if whole else [dev_grads[i] for i in idx],
                dev_m if whole else [dev_m[i] for i in idx],
                dev_v if whole else [dev_v[i] for i in idx],
                None if dev_vmax is None else dev_vmax if whole else [dev_vmax[i] for i in idx],
                wd_factor=1 - lr * weight_decay,
                beta1=beta1,
                beta2=beta2,
                bc2_sqrt=bc2_sqrt,
                eps=eps,
                cm=float(cm),
                cg=float(cg),
                undo=float(undo),
                bc2p_sqrt=bc2p_sqrt,
                maximize=maximize,
            )
