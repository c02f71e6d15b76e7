"""AdamW with overshoot (AdamO): paper.md section 3, one weight set (the overshoot weights) in the model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import _get_capturable_supported_devices

from overshoot.optim._base import (
    GAMMA_MAX_KEY,
    OvershootOptimizer,
    default_to_fused,
    fused_kernels,
    is_zero,
    resolve_gamma,
)

__all__ = ["AdamO", "adamo", "adamo_base_offset", "capturable_devices", "ramp"]

Scalar = float | Tensor
# lr / gamma / prev_lr / prev_gamma of the functional: one value for all parameters, or (capturable) a list
# with one tensor per parameter
Coef = float | Tensor | Sequence[Tensor]
F64 = torch.float64

# How far the default (paper) form drifts from two-model Adam with the same ramp, measured by
# tests/test_optim_adamo.py::test_default_close_to_two_model_adam (float64 MLP on random regression data,
# gamma 5, delay 50, weight_decay 0): max |AdamO - two-model| over all weights and steps, divided by the
# largest change of a base weight, was 1.3e-2 at lr 1e-2 over 300 steps (1.0e-2 over 100 steps) and
# 5.6e-3 at lr 1e-3 over 300 steps. The exact form (exact=True) matches to rounding (< 1e-12).
DEFAULT_FORM_TOLERANCE = 2e-2


def capturable_devices() -> list[str]:
    """Device types on which ``capturable=True`` runs: torch's capturable devices plus the CPU (AdamO's
    capturable math is plain tensor arithmetic, so it also runs, without host syncs, on the CPU)."""
    return ["cpu", *_get_capturable_supported_devices()]


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
        capturable: keep the step counts (float32, as torch's), the previous step's lr and effective factor
            on the parameters' device and compute every coefficient there, so that ``step()``,
            ``move_to_base()`` and ``move_to_overshoot()`` never sync with the host and can be captured in
            a CUDA graph (default: False: host-side step counts, fewer small kernels). Runs on the devices
            of ``capturable_devices()``: torch's capturable devices and, unlike torch's own optimizers, the
            CPU. ``lr`` may then be a 0-dim tensor on the parameters' device (a scheduler updates it in
            place). Foreach or single-tensor only: ``fused=True`` raises RuntimeError. ``load_state_dict``
            keeps this optimizer's ``capturable`` flag and lr type (a tensor lr keeps its object and
            receives the loaded value) and moves the loaded state to match, so states move freely between
            capturable and non-capturable optimizers.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
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
        capturable: bool = False,
        overshoot: float | None = None,
    ) -> None:
        gamma = resolve_gamma(gamma, overshoot, default=5.0)
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        if fused and capturable:
            raise RuntimeError(
                "AdamO(fused=True) is not capturable: pass capturable=False, or fused=False (the foreach "
                "and single-tensor paths are capturable)"
            )
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
            capturable=capturable,
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
            group.setdefault("capturable", False)

    def _add_base_offset(self, params_by_group: list[list[Tensor]]) -> None:
        for group, all_params in zip(self.param_groups, params_by_group, strict=True):
            beta1, beta2 = group["betas"]
            vkey = "max_exp_avg_sq" if group["amsgrad"] else "exp_avg_sq"
            params, on_device = all_params, []
            if group["capturable"]:  # capturable state (device-side last_gamma): coefficients on the device
                on_device = [p for p in all_params if isinstance(self.state[p]["last_gamma"], Tensor)]
                params = [p for p in all_params if not isinstance(self.state[p]["last_gamma"], Tensor)]
            if on_device:
                sts = [self.state[p] for p in on_device]
                adamo_base_offset(
                    on_device,
                    [st["exp_avg"] for st in sts],
                    [st[vkey] for st in sts],
                    [st["step"] for st in sts],
                    lr=[st["last_lr"] for st in sts],
                    gamma=[st["last_gamma"] for st in sts],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    inplace=True,
                )
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
        if (
            torch.cuda.is_initialized()  # a capture needs CUDA initialised: cheap host-only test first
            and torch.cuda.is_current_stream_capturing()
            and not all(g["capturable"] for g in self.param_groups)
        ):
            raise RuntimeError(
                "Attempting CUDA graph capture of step() for an instance of AdamO but param_groups' "
                "capturable is False: construct it with capturable=True"
            )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        any_offset = False
        for group in self.param_groups:
            if group["capturable"]:
                any_offset |= self._capturable_step(group)
                continue
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

    def _capturable_step(self, group: dict[str, Any]) -> bool:
        """One capturable step of a param group (state on the device); True if it may leave an offset."""
        gamma = group["gamma"]
        ps: list[Tensor] = []
        gs: list[Tensor] = []
        ms: list[Tensor] = []
        vs: list[Tensor] = []
        xs: list[Tensor] = []
        steps: list[Tensor] = []
        last_lrs: list[Tensor] = []
        last_gammas: list[Tensor] = []
        sts: list[dict[str, Any]] = []
        prev_zero = True  # host knowledge: no parameter of the group carries an offset
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError("AdamO does not support sparse gradients")
            st = self.state[p]
            if len(st) == 0:
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["last_lr"] = torch.zeros((), dtype=F64, device=p.device)
                st["last_gamma"] = torch.zeros((), dtype=F64, device=p.device)
                st[GAMMA_MAX_KEY] = 0.0
            prev_zero = prev_zero and st[GAMMA_MAX_KEY] == 0.0
            ps.append(p)
            gs.append(grad)
            ms.append(st["exp_avg"])
            vs.append(st["exp_avg_sq"])
            if group["amsgrad"]:
                xs.append(st["max_exp_avg_sq"])
            steps.append(st["step"])
            last_lrs.append(st["last_lr"])
            last_gammas.append(st["last_gamma"])
            sts.append(st)
        if not ps:
            return False
        beta1, beta2 = group["betas"]
        adamo(
            ps,
            gs,
            ms,
            vs,
            xs,
            steps,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            gamma=gamma,
            delay=group["delay"],
            prev_lr=last_lrs,
            prev_gamma=0.0 if prev_zero else last_gammas,
            exact=group["exact"],
            amsgrad=group["amsgrad"],
            maximize=group["maximize"],
            foreach=group["foreach"],
            fused=False,
            capturable=True,
            out_lr=last_lrs,
            out_gamma=last_gammas,
        )
        for st in sts:
            st[GAMMA_MAX_KEY] = float(gamma)  # the ramped factor written on the device is at most gamma
        return gamma != 0

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict; this optimizer's ``capturable`` flags and lr types are kept and the loaded
        state (step counts, previous lr and factor) is moved to the host or the device to match them."""
        keep = [(g["capturable"], g["lr"]) for g in self.param_groups]
        sd = dict(state_dict)
        # previous lr / factor as Python floats, so torch's loader does not cast them to the parameter dtype
        sd["state"] = {
            k: {
                key: float(v) if key in _HOST_SCALARS and isinstance(v, Tensor) else v
                for key, v in st.items()
            }
            if isinstance(st, dict)
            else st
            for k, st in state_dict["state"].items()
        }
        super().load_state_dict(sd)
        for group, (capturable, lr) in zip(self.param_groups, keep, strict=True):
            group["capturable"] = capturable
            loaded = group["lr"]
            if isinstance(lr, Tensor):
                lr.copy_(loaded) if isinstance(loaded, Tensor) else lr.fill_(loaded)
                group["lr"] = lr
            elif isinstance(loaded, Tensor):
                group["lr"] = float(loaded)
            for p in group["params"]:
                st = self.state.get(p)
                if not st or "last_gamma" not in st:
                    continue
                if capturable:
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)
                    st.setdefault(GAMMA_MAX_KEY, float(st["last_gamma"]))
                    for key in _HOST_SCALARS:
                        st[key] = torch.tensor(float(st[key]), dtype=F64, device=p.device)
                else:
                    st.pop(GAMMA_MAX_KEY, None)
        self._check_group_devices()
        self._refresh_any_offset()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after checking its values (and, capturable, its devices)."""
        super().add_param_group(param_group)
        _check_devices(self.param_groups[-1])

    def _check_group_devices(self) -> None:
        for group in self.param_groups:
            _check_group(group)
            _check_devices(group)


_HOST_SCALARS = ("last_lr", "last_gamma")


def _check_devices(group: dict[str, Any]) -> None:
    """Capturable groups: parameters on a capturable device, a tensor lr on the parameters' device."""
    if not group.get("capturable", False):
        return
    supported = capturable_devices()
    devices = {p.device for p in group["params"]}
    bad = sorted(str(d) for d in devices if d.type not in supported)
    if bad:
        raise RuntimeError(
            f"AdamO(capturable=True) needs parameters on one of {supported} (got {', '.join(bad)}): "
            "pass capturable=False"
        )
    lr = group["lr"]
    if isinstance(lr, Tensor) and devices and devices != {lr.device}:
        raise ValueError(
            f"AdamO(capturable=True) needs a tensor lr on the parameters' device (lr on {lr.device}, "
            f"parameters on {', '.join(sorted(map(str, devices)))}): create it there, e.g. "
            "torch.tensor(1e-3, device=...)"
        )


def _check_group(group: dict[str, Any]) -> None:
    lr = group["lr"]
    if isinstance(lr, Tensor):
        if not group.get("capturable", False):
            raise ValueError(
                "AdamO takes a tensor lr only with capturable=True: pass lr as a float, or capturable=True"
            )
        if lr.numel() != 1 or lr.dim() != 0 or not lr.is_floating_point():
            raise ValueError(
                f"Tensor lr must be a 0-dim floating tensor (got shape {tuple(lr.shape)}, {lr.dtype})"
            )
        lr = float(lr)
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
    lr: Coef,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    gamma: Coef,
    delay: int | None = 50,
    prev_lr: Coef | None = None,
    prev_gamma: Coef | None = None,
    exact: bool = False,
    amsgrad: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
    fused: bool | None = None,
    capturable: bool = False,
    increment_steps: bool = True,
    out_lr: list[Tensor] | None = None,
    out_gamma: list[Tensor] | None = None,
) -> None:
    r"""Functional AdamO step, in place on params, moments and steps (``grads`` are not modified).

    Per parameter, with ``t`` the step count after incrementing, ``g_t = ramp(gamma, t, delay)`` and
    ``g_p = prev_gamma`` (default ``ramp(gamma, t-1, delay)``; 0 at ``t = 1``),
    ``d = sqrt(v)/sqrt(1-beta2^t) + eps``:

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
            With ``capturable=True`` each may also be a list with one tensor per parameter (0-dim for the
            foreach path); tensors must be on the parameters' device. The coefficient arithmetic is done
            in float64 whatever the tensors' dtypes, then cast to each parameter's dtype.
        state_steps: float tensors holding the step counts: on the CPU (torch's default placement), or
            with ``capturable=True`` on each parameter's device.
        foreach, fused: implementation choice as in ``torch.optim.adam``; None picks fused on CUDA (triton,
            float32/float16/bfloat16), else foreach for float lr/gamma, else single-tensor. With
            ``capturable=True``: foreach where every lr/gamma value is a float or a 0-dim tensor, else
            single-tensor; ``fused=True`` raises RuntimeError (the Triton kernel takes host coefficients).
        capturable: compute the step counts' effects (ramp, bias corrections, every coefficient) with
            tensor ops on the device: no host sync, so the call can be captured in a CUDA graph and
            replayed with lr tensors updated in place between replays. Parameters on a device of
            ``capturable_devices()`` (the CPU included), each step tensor on its parameter's device.
            Equal to the default path to rounding.
        increment_steps: True (torch's convention): each ``state_steps[i]`` is incremented in place first,
            so every parameter needs its own step tensor (the same tensor twice raises ValueError). False:
            the caller has already advanced them (``t >= 1`` is this update's count); then one tensor may
            serve several parameters and several calls.
        out_lr, out_gamma: capturable only: per-parameter 0-dim tensors that receive this step's lr and
            effective factor ``g_t`` (what the next step's ``prev_lr`` / ``prev_gamma`` and
            ``adamo_base_offset`` need); may be the very tensors passed as ``prev_lr`` / ``prev_gamma``.

    Example (population: N members stacked along dim 0, one shared step count, lr a 0-dim float64
    device tensor updated in place, ``gamma_by_dim[d]`` a float64 ``[N, 1, ..., 1]`` tensor with d dims)::

        t.add_(1)  # the population's own count, shared by every parameter
        adamo(ps, gs, ms, vs, [], [t] * len(ps), lr=lr_t, prev_lr=prev_lr_t,
              gamma=[gamma_by_dim[p.dim()] for p in ps], beta1=b1, beta2=b2, eps=eps, weight_decay=wd,
              delay=delay, capturable=True, increment_steps=False, foreach=False, fused=False)
        prev_lr_t.copy_(lr_t)
    """
    if prev_lr is None:
        prev_lr = lr
    coefs = (lr, gamma, prev_lr, prev_gamma)
    if increment_steps and len({id(s) for s in state_steps}) != len(state_steps):
        raise ValueError(
            "state_steps holds the same tensor for several parameters, which would be incremented once per "
            "parameter: pass one step tensor per parameter, or advance the shared count yourself and pass "
            "increment_steps=False"
        )
    if capturable:
        if fused:
            raise RuntimeError(
                "adamo(fused=True) is not capturable: pass capturable=False, or fused=False (the foreach and "
                "single-tensor paths are capturable)"
            )
        _check_capturable(params, state_steps, coefs)
        if foreach is None:
            foreach = all(_scalar_like(x) for x in coefs)
        elif foreach and not all(_scalar_like(x) for x in coefs):
            raise ValueError(
                "capturable foreach AdamO takes lr/gamma/prev_lr/prev_gamma as floats, 0-dim tensors or "
                "lists of 0-dim tensors: pass foreach=False for broadcast (e.g. per-member) tensors"
            )
        impl_c = _multi_tensor_capturable if foreach else _single_tensor_capturable
        impl_c(
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
            increment_steps=increment_steps,
            out_lr=out_lr,
            out_gamma=out_gamma,
        )
        return
    if any(isinstance(x, (list, tuple)) for x in coefs) or out_lr is not None or out_gamma is not None:
        raise ValueError(
            "per-parameter lists of lr/gamma/prev_lr/prev_gamma and out_lr/out_gamma need capturable=True"
        )
    lr_, gamma_ = cast(Scalar, lr), cast(Scalar, gamma)
    prev_lr_, prev_gamma_ = cast(Scalar, prev_lr), cast(Scalar | None, prev_gamma)
    tensor_args = any(isinstance(x, Tensor) for x in coefs)
    if fused is None and foreach is None:
        if tensor_args:
            fused, foreach = False, False
        else:
            fused = default_to_fused(params, grads)
            foreach = not fused
    if (fused or foreach) and tensor_args:
        raise ValueError(
            "tensor lr/gamma/prev_lr/prev_gamma need the single-tensor path: pass foreach=False, fused=False "
            "(or capturable=True)"
        )
    impl = _fused_adamo if fused else _multi_tensor_adamo if foreach else _single_tensor_adamo
    impl(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        lr=lr_,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        gamma=gamma_,
        delay=delay,
        prev_lr=prev_lr_,
        prev_gamma=prev_gamma_,
        exact=exact,
        amsgrad=amsgrad,
        maximize=maximize,
        increment_steps=increment_steps,
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
    increment_steps: bool = True,
) -> None:
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        vd = max_exp_avg_sqs[i] if amsgrad else exp_avg_sq
        if increment_steps:
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
    increment_steps: bool = True,
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
        if increment_steps:
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
    increment_steps: bool = True,
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
    if increment_steps:
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


# ------------------------------------------------------------------------------------------- capturable
def _scalar_like(x: Coef | None) -> bool:
    """A float, a 0-dim tensor, or a list of 0-dim tensors (what the capturable foreach path takes)."""
    if isinstance(x, (list, tuple)):
        return all(isinstance(v, Tensor) and v.dim() == 0 for v in x)
    return not isinstance(x, Tensor) or x.dim() == 0


def _check_capturable(
    params: list[Tensor], state_steps: list[Tensor], coefs: tuple[Coef | None, ...]
) -> None:
    supported = capturable_devices()
    for p, s in zip(params, state_steps, strict=True):
        if p.device.type not in supported or s.device != p.device:
            raise RuntimeError(
                f"If capturable=True, params and state_steps must be on supported devices: {supported} "
                f"(got a parameter on {p.device} with its step on {s.device})"
            )
    devices = {p.device for p in params}
    for x in coefs:
        pairs = zip(x, params, strict=True) if isinstance(x, (list, tuple)) else [(x, p) for p in params[:1]]
        for v, p in pairs:
            if isinstance(v, Tensor) and {v.device} != ({p.device} if x is not v else devices):
                raise RuntimeError(
                    f"capturable AdamO needs tensor lr/gamma/prev_lr/prev_gamma on the parameters' device "
                    f"(got one on {v.device}, parameters on {', '.join(sorted(map(str, devices)))}): a CUDA "
                    "graph would freeze its value"
                )


def _pick(x: Coef | None, i: int) -> Scalar | None:
    return x[i] if isinstance(x, (list, tuple)) else cast(Scalar | None, x)


def _f64(x: Scalar | None) -> Scalar | None:
    return x.to(F64) if isinstance(x, Tensor) else x


class _DeviceCoefs(NamedTuple):
    """One step's coefficients as float64 tensors: ``p += undo*m/d_prev`` (exact form),
    ``p += (ncm*m + ncg*grad)/d``; None where the host knows the term is zero."""

    ncm: Tensor
    ncg: Tensor | None
    undo: Tensor | None
    bc2_sqrt: Tensor
    bc2p_sqrt: Tensor | None
    wd_factor: Scalar
    g_t: Tensor


def _device_coefficients(
    t: Tensor,
    *,
    lr: Scalar,
    prev_lr: Scalar,
    gamma: Scalar,
    prev_gamma: Scalar | None,
    delay: int | None,
    beta1: float,
    beta2: float,
    weight_decay: float,
    exact: bool,
) -> _DeviceCoefs:
    """The coefficients of ``_coefficients`` as tensor ops on ``t`` (float64 step counts >= 1)."""
    lr, prev_lr, gamma = cast(Scalar, _f64(lr)), cast(Scalar, _f64(prev_lr)), cast(Scalar, _f64(gamma))
    prev_gamma = _f64(prev_gamma)
    g_t = cast(Tensor, ramp(gamma, t, delay))
    bc1 = 1 - beta1**t
    bc2_sqrt = (1 - beta2**t).sqrt()
    wd_factor = 1 - lr * weight_decay
    step_m = lr * (1 + g_t)
    if is_zero(gamma) and (prev_gamma is None or is_zero(prev_gamma)):  # no offset: AdamW's step
        return _DeviceCoefs(-(step_m / bc1), None, None, bc2_sqrt, None, wd_factor, g_t)
    first = (t <= 1).to(F64)  # 1 at the first step, where there is no previous offset
    g_p = (ramp(gamma, t - 1, delay) if prev_gamma is None else prev_gamma) * (1 - first)
    if exact:
        undo = prev_lr * g_p / ((1 - beta1 ** (t - 1)) + first)
        bc2p_sqrt = ((1 - beta2 ** (t - 1)) + first).sqrt()
        return _DeviceCoefs(-(step_m / bc1), None, undo, bc2_sqrt, bc2p_sqrt, wd_factor, g_t)
    if beta1 == 0:
        raise ValueError("the default AdamO form needs beta1 > 0 when gamma > 0 (or pass exact=True)")
    cm = (step_m - prev_lr * g_p / beta1) / bc1
    cg = prev_lr * g_p * (1 - beta1) / beta1 / bc1
    return _DeviceCoefs(-cm, -cg, None, bc2_sqrt, None, wd_factor, g_t)


def _as(x: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return None if x is None else x.to(dtype)


def _write_out(
    out_lr: list[Tensor] | None, out_gamma: list[Tensor] | None, i: int, lr: Scalar, g_t: Tensor
) -> None:
    if out_lr is not None:
        if isinstance(lr, Tensor):
            out_lr[i].copy_(lr)
        else:
            out_lr[i].fill_(lr)
    if out_gamma is not None:
        out_gamma[i].copy_(g_t)


def _single_tensor_capturable(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Coef,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    gamma: Coef,
    delay: int | None,
    prev_lr: Coef,
    prev_gamma: Coef | None,
    exact: bool,
    amsgrad: bool,
    maximize: bool,
    increment_steps: bool,
    out_lr: list[Tensor] | None,
    out_gamma: list[Tensor] | None,
) -> None:
    n = len(params)
    rows: list[_Row] | None = None
    if (
        n > 1
        and all(_scalar_like(x) for x in (lr, gamma, prev_lr, prev_gamma))
        and len({s.device for s in state_steps}) == 1
    ):  # one vectorised coefficient computation for all parameters
        if increment_steps:
            for s in state_steps:
                s += 1
        idx = list(range(n))
        c = _device_coefficients(
            torch.stack(state_steps).to(F64), lr=cast(Scalar, _gather(lr, idx)),
            prev_lr=cast(Scalar, _gather(prev_lr, idx)), gamma=cast(Scalar, _gather(gamma, idx)),
            prev_gamma=_gather(prev_gamma, idx), delay=delay, beta1=beta1, beta2=beta2,
            weight_decay=weight_decay, exact=exact,
        )  # fmt: skip
        by_dtype: dict[torch.dtype, list[_Row]] = {}
        rows = [by_dtype.setdefault(p.dtype, _rows(c, p.dtype, n))[i] for i, p in enumerate(params)]
    # otherwise parameters sharing a step tensor and coefficient values share one coefficient computation
    cache: dict[tuple[int, ...], _Row] = {}
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        vd = max_exp_avg_sqs[i] if amsgrad else exp_avg_sq
        lr_i = cast(Scalar, _pick(lr, i))
        if rows is not None:
            row = rows[i]
        else:
            step = state_steps[i]
            if increment_steps:
                step += 1
            gamma_i = cast(Scalar, _pick(gamma, i))
            prev_lr_i, prev_gamma_i = cast(Scalar, _pick(prev_lr, i)), _pick(prev_gamma, i)
            key = (id(step), id(lr_i), id(gamma_i), id(prev_lr_i), id(prev_gamma_i), id(param.dtype))
            if key not in cache:
                c = _device_coefficients(
                    step.to(F64), lr=lr_i, prev_lr=prev_lr_i, gamma=gamma_i, prev_gamma=prev_gamma_i,
                    delay=delay, beta1=beta1, beta2=beta2, weight_decay=weight_decay, exact=exact,
                )  # fmt: skip
                cache[key] = _rows(c, param.dtype, 0)[0]
            row = cache[key]
        if row.undo is not None:
            denom_prev = (vd.sqrt() / cast(Tensor, row.bc2p_sqrt)).add_(eps)
            param.addcdiv_(exp_avg * row.undo, denom_prev)
        if weight_decay != 0:
            param.mul_(row.wd_factor)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
        denom = (vd.sqrt() / row.bc2_sqrt).add_(eps)
        num = exp_avg * row.ncm
        if row.ncg is not None:
            num.addcmul_(grad, row.ncg)
        param.addcdiv_(num, denom)
        _write_out(out_lr, out_gamma, i, lr_i, row.g_t)


class _Row(NamedTuple):
    """One parameter's coefficients: ncm, ncg, undo, weight-decay factor in its dtype, the rest float64."""

    ncm: Tensor
    ncg: Tensor | None
    undo: Tensor | None
    wd_factor: Scalar
    bc2_sqrt: Tensor
    bc2p_sqrt: Tensor | None
    g_t: Tensor


def _rows(c: _DeviceCoefs, dtype: torch.dtype, n: int) -> list[_Row]:
    """Per-parameter coefficients from ``[n]`` vectors (``n > 0``) or from one set (``n = 0``: one row)."""
    if n == 0:
        wd = c.wd_factor.to(dtype) if isinstance(c.wd_factor, Tensor) else c.wd_factor
        return [
            _Row(c.ncm.to(dtype), _as(c.ncg, dtype), _as(c.undo, dtype), wd, c.bc2_sqrt, c.bc2p_sqrt, c.g_t)
        ]

    def split(x: Tensor | None, dt: torch.dtype) -> list[Tensor] | list[None]:
        return [None] * n if x is None else _split(x, dt, n)

    wd_f = c.wd_factor
    wds: list[Scalar] = list(_split(wd_f, dtype, n)) if isinstance(wd_f, Tensor) else [wd_f] * n
    cols = zip(
        split(c.ncm, dtype), split(c.ncg, dtype), split(c.undo, dtype), wds, split(c.bc2_sqrt, F64),
        split(c.bc2p_sqrt, F64), split(c.g_t, F64), strict=True,
    )  # fmt: skip
    return [_Row(*col) for col in cols]


def _gather(x: Coef | None, idx: list[int]) -> Scalar | None:
    """A per-parameter list as a float64 vector over ``idx``; one value for all as it is."""
    if isinstance(x, (list, tuple)):
        return torch.stack([x[i] for i in idx]).to(F64)
    return cast(Scalar | None, x)


def _split(x: Tensor, dtype: torch.dtype, k: int) -> list[Tensor]:
    """A [k] (or 0-dim) coefficient as k 0-dim tensors of ``dtype`` (the foreach ops' per-tensor scalars)."""
    x = x.to(dtype)
    return list(x.unbind()) if x.dim() else [x] * k


def _multi_tensor_capturable(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Coef,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    gamma: Coef,
    delay: int | None,
    prev_lr: Coef,
    prev_gamma: Coef | None,
    exact: bool,
    amsgrad: bool,
    maximize: bool,
    increment_steps: bool,
    out_lr: list[Tensor] | None,
    out_gamma: list[Tensor] | None,
) -> None:
    if not params:
        return
    lists: list[list[Tensor]] = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    if amsgrad:
        lists.append(max_exp_avg_sqs)
    grouped = Optimizer._group_tensors_by_device_and_dtype(lists, with_indices=True)  # type: ignore[arg-type]
    for dev_lists, indices in grouped.values():
        dev_params, dev_grads, dev_m, dev_v, dev_steps = (cast(list[Tensor], x) for x in dev_lists[:5])
        dev_vd = cast(list[Tensor], dev_lists[5]) if amsgrad else dev_v
        k, dt = len(dev_params), dev_params[0].dtype
        if maximize:
            dev_grads = cast(list[Tensor], torch._foreach_neg(dev_grads))
        if increment_steps:
            torch._foreach_add_(dev_steps, 1.0)
        lr_g = cast(Scalar, _gather(lr, indices))
        c = _device_coefficients(
            torch.stack(dev_steps).to(F64), lr=lr_g, prev_lr=cast(Scalar, _gather(prev_lr, indices)),
            gamma=cast(Scalar, _gather(gamma, indices)), prev_gamma=_gather(prev_gamma, indices),
            delay=delay, beta1=beta1, beta2=beta2, weight_decay=weight_decay, exact=exact,
        )  # fmt: skip
        if c.undo is not None:
            denom_prev = torch._foreach_sqrt(dev_vd)
            torch._foreach_div_(denom_prev, _split(cast(Tensor, c.bc2p_sqrt), dt, k))
            torch._foreach_add_(denom_prev, eps)
            num = torch._foreach_mul(dev_m, _split(c.undo, dt, k))
            torch._foreach_addcdiv_(dev_params, num, denom_prev)
            del denom_prev, num
        if weight_decay != 0:
            wd = c.wd_factor
            if isinstance(wd, Tensor):
                torch._foreach_mul_(dev_params, _split(wd, dt, k))
            else:
                torch._foreach_mul_(dev_params, wd)
        torch._foreach_lerp_(dev_m, dev_grads, 1 - beta1)
        torch._foreach_mul_(dev_v, beta2)
        torch._foreach_addcmul_(dev_v, dev_grads, dev_grads, 1 - beta2)
        if amsgrad:
            torch._foreach_maximum_(dev_vd, dev_v)
        denom = torch._foreach_sqrt(dev_vd)
        torch._foreach_div_(denom, _split(c.bc2_sqrt, dt, k))
        torch._foreach_add_(denom, eps)
        num = torch._foreach_mul(dev_m, _split(c.ncm, dt, k))
        if c.ncg is not None:
            torch._foreach_add_(num, torch._foreach_mul(dev_grads, _split(c.ncg, dt, k)))
        torch._foreach_addcdiv_(dev_params, num, denom)
        if out_lr is not None:
            lr_v = lr_g if isinstance(lr_g, Tensor) else torch.full_like(c.g_t, lr_g)
            torch._foreach_copy_([out_lr[i] for i in indices], _split(lr_v.to(F64), F64, k))
        if out_gamma is not None:
            torch._foreach_copy_([out_gamma[i] for i in indices], _split(c.g_t, F64, k))


def adamo_base_offset(
    params: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    *,
    lr: Coef,
    gamma: Coef,
    beta1: float,
    beta2: float,
    eps: float,
    inplace: bool = False,
    foreach: bool | None = None,
) -> list[Tensor]:
    r"""AdamO's base weights from the overshoot weights ``params``, with tensor ops only (no host sync):
    ``theta = theta' + lr*gamma*m/(bc1_t*d_t)``, ``bc1_t = 1-beta1^t``,
    ``d_t = sqrt(v)/sqrt(1-beta2^t) + eps``.

    Returns new tensors, or (``inplace=True``) adds the offset to ``params`` and returns them.

    Args:
        exp_avgs, exp_avg_sqs: the moments after the last step (with amsgrad: ``max_exp_avg_sqs``).
        state_steps: step counts ``t`` after the last step (one tensor may serve several parameters); at
            ``t = 0`` pass ``gamma = 0`` (the offset is then 0).
        lr, gamma: the last step's lr and *effective* factor (``ramp(gamma, t, delay)``, e.g. the
            ``out_lr`` / ``out_gamma`` of ``adamo``): floats or tensors broadcastable against each
            parameter (population: ``gamma`` of shape ``[N, 1, ..., 1]``), or lists with one tensor per
            parameter. Arithmetic in float64, then cast to the parameters' dtype.
        foreach: None picks foreach where every lr/gamma value is a float or 0-dim tensor.
    """
    if foreach is None:
        foreach = _scalar_like(lr) and _scalar_like(gamma)
    if not params:
        return []
    if foreach:
        if not (_scalar_like(lr) and _scalar_like(gamma)):
            raise ValueError(
                "foreach adamo_base_offset takes lr/gamma as floats, 0-dim tensors or lists of 0-dim "
                "tensors: pass foreach=False for broadcast (e.g. per-member) tensors"
            )
        out: list[Tensor] = []
        order: list[int] = []
        grouped = Optimizer._group_tensors_by_device_and_dtype(
            [params, exp_avgs, exp_avg_sqs, state_steps],  # type: ignore[list-item]
            with_indices=True,
        )
        for dev_lists, indices in grouped.values():
            dev_p, dev_m, dev_v, dev_s = (cast(list[Tensor], x) for x in dev_lists)
            k, dt = len(dev_p), dev_p[0].dtype
            coef, bc2_sqrt = _offset_coefficients(
                torch.stack(dev_s).to(F64), cast(Scalar, _gather(lr, indices)),
                cast(Scalar, _gather(gamma, indices)), beta1, beta2,
            )  # fmt: skip
            denom = torch._foreach_sqrt(dev_v)
            torch._foreach_div_(denom, _split(bc2_sqrt, dt, k))
            torch._foreach_add_(denom, eps)
            num = torch._foreach_mul(dev_m, _split(coef, dt, k))
            if inplace:
                torch._foreach_addcdiv_(dev_p, num, denom)
            else:
                out.extend(torch._foreach_addcdiv(dev_p, num, denom))
                order.extend(indices)
        if inplace:
            return params
        result = [params[0]] * len(params)
        for i, base in zip(order, out, strict=True):
            result[i] = base
        return result
    results = []
    cache: dict[tuple[int, ...], tuple[Tensor, Tensor]] = {}  # shared step and values: computed once
    for i, p in enumerate(params):
        lr_i, gamma_i = cast(Scalar, _pick(lr, i)), cast(Scalar, _pick(gamma, i))
        key = (id(state_steps[i]), id(lr_i), id(gamma_i), id(p.dtype))
        if key not in cache:
            coef, bc2_sqrt = _offset_coefficients(state_steps[i].to(F64), lr_i, gamma_i, beta1, beta2)
            cache[key] = coef.to(p.dtype), bc2_sqrt
        coef_d, bc2_sqrt = cache[key]
        d_i = (exp_avg_sqs[i].sqrt() / bc2_sqrt).add_(eps)
        num_i = exp_avgs[i] * coef_d
        results.append(p.addcdiv_(num_i, d_i) if inplace else torch.addcdiv(p, num_i, d_i))
    return results


def _offset_coefficients(
    t: Tensor, lr: Scalar, gamma: Scalar, beta1: float, beta2: float
) -> tuple[Tensor, Tensor]:
    """(lr*gamma/bc1_t, sqrt(1-beta2^t)) as float64 tensors; bias corrections read 1 at t = 0 (no 0/0)."""
    first = (t < 1).to(F64)
    lr, gamma = cast(Scalar, _f64(lr)), cast(Scalar, _f64(gamma))
    coef = lr * gamma / ((1 - beta1**t) + first)
    return cast(Tensor, coef), ((1 - beta2**t) + first).sqrt()
