"""AdamO, AdamW with overshoot (Kopal et al. 2025, arXiv 2501.09556): the model holds overshoot weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import _get_capturable_supported_devices

from overshoot.optim._base import (
    F64,
    GAMMA_MAX_KEY,
    OvershootOptimizer,
    Scalar,
    default_to_fused,
    fused_kernels,
    is_zero,
    may_offset,
    ramp,
    resolve_gamma,
)
from overshoot.optim.checks import check_adamo

__all__ = ["AdamO", "adamo", "adamo_base_offset", "capturable_devices", "ramp"]

# lr / gamma / prev_lr / prev_gamma of the functional: one value for all parameters, or a list with one value
# per parameter (floats; tensors with capturable)
Coef = float | Tensor | Sequence[float] | Sequence[Tensor]

# Largest drift of the default (paper) form from two-model Adam with the same ramp, as a fraction of the
# largest change of a base weight, that tests/test_optim_adamo.py::test_default_close_to_two_model_adam
# accepts; the measured drifts are in results/adamo_form/README.md. The exact form (exact=True) matches to
# rounding.
DEFAULT_FORM_TOLERANCE = 2e-2


def capturable_devices() -> list[str]:
    """Device types on which ``capturable=True`` runs: torch's capturable devices plus the CPU (AdamO's
    capturable math is plain tensor arithmetic, so it also runs, without host syncs, on the CPU)."""
    return ["cpu", *_get_capturable_supported_devices()]


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
    bias correction and denominator); its drift from it stays within ``DEFAULT_FORM_TOLERANCE`` of the
    weight change.
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
        gamma: overshoot factor, >= 0 (default: ``checks.DEFAULT_GAMMA``); ``overshoot=`` is an alias.
        delay: steps without overshoot before the ramp, >= 0 or None for no ramp (default: 50).
        amsgrad: use the AMSGrad variant (default: False).
        maximize: maximize the objective instead of minimizing (default: False).
        foreach: use the foreach implementation (default: None).
        fused: use the fused Triton kernel (default: None: fused on CUDA for float32/float16/bfloat16
            parameters, foreach elsewhere). ``fused=True`` where it cannot run raises RuntimeError.
        exact: use the exact form instead of the paper's efficient form (default: False).
        capturable: as torch's: the step counts (float32), the previous lr and effective factor on the
            parameters' device, every coefficient computed there, so that ``step()`` and the base-weight
            round trip never sync with the host and can be captured in a CUDA graph (default: False).
            Runs on ``capturable_devices()``, the CPU included; ``lr`` may then be a 0-dim tensor on the
            parameters' device. Not with ``fused=True``. ``load_state_dict`` keeps this optimizer's
            ``capturable`` flag and lr (a tensor lr receives the loaded value) and moves the loaded state
            to match, so states move freely between capturable and non-capturable optimizers.
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
        gamma = resolve_gamma(gamma, overshoot)
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        if fused and capturable:
            raise RuntimeError(
                "AdamO(fused=True) is not capturable: pass capturable=False, or fused=False (the foreach "
                "and single-tensor paths are capturable)"
            )
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, gamma=gamma, delay=delay, amsgrad=amsgrad,
            maximize=maximize, foreach=foreach, fused=fused, exact=exact, capturable=capturable,
        )  # fmt: skip
        _check_group(defaults)
        super().__init__(params, defaults)
        if fused:
            fused_kernels().check_fused_supported(
                [p for g in self.param_groups for p in g["params"]], "AdamO"
            )

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_group(group)
        if group.get("capturable", False):
            _check_capturable(group["params"], (group["lr"],), error=ValueError)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, default in dict(amsgrad=False, maximize=False, foreach=None, fused=None, exact=False,
                                     capturable=False).items():  # fmt: skip
                group.setdefault(key, default)

    def _init_group(self, group: dict[str, Any], lists: tuple[list[Any], ...]) -> None:
        """Append the parameters that have a gradient, their gradients and state (created on first use) to
        ``lists`` = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, states). As in
        torch's Adam, the step count is on the host, or with ``capturable`` on the parameter's device."""
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, states = lists
        capturable = group["capturable"]
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError("AdamO does not support sparse gradients")
            st = self.state[p]
            if len(st) == 0:
                device = p.device if capturable else "cpu"
                st["step"] = torch.zeros((), dtype=torch.float32, device=device)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                for key in _HOST_SCALARS:
                    st[key] = torch.zeros((), dtype=F64, device=p.device) if capturable else 0.0
                if capturable:
                    st[GAMMA_MAX_KEY] = 0.0
            params.append(p)
            grads.append(grad)
            exp_avgs.append(st["exp_avg"])
            exp_avg_sqs.append(st["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(st["max_exp_avg_sq"])
            state_steps.append(st["step"])
            states.append(st)

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
            lists: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
            self._init_group(group, lists)
            states, state_steps = lists[6], lists[5]
            if not states:
                continue
            lr, gamma, delay, capturable = group["lr"], group["gamma"], group["delay"], group["capturable"]
            # the previous step's lr and factor (which set the current offsets): capturable, tensors on the
            # device that this step overwrites; else Python floats. 0.0 where the host knows every factor is.
            last_lr, last_gamma = [st["last_lr"] for st in states], [st["last_gamma"] for st in states]
            out = (last_lr, last_gamma) if capturable else (None, None)
            adamo(
                *lists[:6], lr=lr, beta1=group["betas"][0], beta2=group["betas"][1], eps=group["eps"],
                weight_decay=group["weight_decay"], gamma=gamma, delay=delay, prev_lr=last_lr,
                prev_gamma=last_gamma if any(map(may_offset, states)) else 0.0, exact=group["exact"],
                amsgrad=group["amsgrad"], maximize=group["maximize"], foreach=group["foreach"],
                fused=group["fused"], capturable=capturable, out_lr=out[0], out_gamma=out[1],
            )  # fmt: skip
            if capturable:  # the factor written on the device is at most gamma: the host's upper bound
                for st in states:
                    st[GAMMA_MAX_KEY] = float(gamma)
                any_offset |= gamma != 0
                continue
            lr_f, ramped = float(lr), {}
            for st, step in zip(states, torch.stack(state_steps).tolist(), strict=True):
                if step not in ramped:
                    ramped[step] = float(ramp(gamma, step, delay))
                    any_offset |= ramped[step] != 0.0
                st["last_lr"], st["last_gamma"] = lr_f, ramped[step]
        if any_offset:
            self._any_offset = True
        else:
            self._refresh_any_offset()
        return loss

    def _add_base_offset(self, params_by_group: list[list[Tensor]]) -> None:
        for group, params in zip(self.param_groups, params_by_group, strict=True):
            sts = [self.state[p] for p in params]
            vkey = "max_exp_avg_sq" if group["amsgrad"] else "exp_avg_sq"
            adamo_base_offset(
                params, [st["exp_avg"] for st in sts], [st[vkey] for st in sts], [st["step"] for st in sts],
                lr=[st["last_lr"] for st in sts], gamma=[st["last_gamma"] for st in sts],
                beta1=group["betas"][0], beta2=group["betas"][1], eps=group["eps"], inplace=True,
            )  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict; this optimizer's ``capturable`` flags and lr types are kept and the loaded
        state (step counts, previous lr and factor) is moved to the host or the device to match them."""
        keep = [(g["capturable"], g["lr"]) for g in self.param_groups]
        sd = dict(state_dict)
        # previous lr / factor as Python floats, so torch's loader does not cast them to the parameter dtype
        sd["state"] = {k: dict(st) for k, st in state_dict["state"].items()}
        for st in sd["state"].values():
            st.update({key: float(st[key]) for key in _HOST_SCALARS if isinstance(st.get(key), Tensor)})
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
        for group in self.param_groups:
            self._check_group(group)
        self._refresh_any_offset()


_HOST_SCALARS = ("last_lr", "last_gamma")


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
    check_adamo(
        float(lr), group["betas"], group["eps"], group["weight_decay"], group["gamma"], group["delay"],
        group["exact"],
    )  # fmt: skip


def adamo(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor], state_steps: list[Tensor], *, lr: Coef, beta1: float, beta2: float,
    eps: float, weight_decay: float, gamma: Coef, delay: int | None = 50, prev_lr: Coef | None = None,
    prev_gamma: Coef | None = None, exact: bool = False, amsgrad: bool = False, maximize: bool = False,
    foreach: bool | None = None, fused: bool | None = None, capturable: bool = False,
    increment_steps: bool = True, out_lr: list[Tensor] | None = None, out_gamma: list[Tensor] | None = None,
) -> None:  # fmt: skip
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
            Each may also be a list with one value per parameter: floats, or with ``capturable=True``
            tensors (0-dim for the foreach path); tensors must be on the parameters' device. The
            coefficient arithmetic is done in float64 whatever the tensors' dtypes, then cast to each
            parameter's dtype.
        state_steps: float tensors holding the step counts: on the CPU (torch's default placement), or
            with ``capturable=True`` on each parameter's device.
        foreach, fused: implementation choice as in ``torch.optim.adam``; None picks fused on CUDA (triton,
            float32/float16/bfloat16), else foreach for float lr/gamma (with ``capturable``: floats or
            0-dim tensors), else single-tensor. ``fused`` is not capturable.
        capturable: as torch's: every coefficient (ramp, bias corrections) from tensor ops on the device,
            no host sync, so the call can be captured in a CUDA graph and replayed with lr tensors updated
            in place. Parameters on a device of ``capturable_devices()`` (the CPU included), each step
            tensor on its parameter's device. Equal to the default path to rounding.
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
        _check_capturable(params, coefs, state_steps)
        scalars = all(_scalar_like(x) for x in coefs)
        if foreach and not scalars:
            raise ValueError(
                "capturable foreach AdamO takes lr/gamma/prev_lr/prev_gamma as floats, 0-dim tensors or "
                "lists of 0-dim tensors: pass foreach=False for broadcast (e.g. per-member) tensors"
            )
        fused, foreach = False, scalars if foreach is None else foreach
    else:
        lists = [v for x in coefs if isinstance(x, (list, tuple)) for v in x]
        if any(isinstance(v, Tensor) for v in lists) or out_lr is not None or out_gamma is not None:
            raise ValueError(
                "per-parameter lists of lr/gamma/prev_lr/prev_gamma and out_lr/out_gamma need capturable=True"
            )
        tensor_args = any(isinstance(x, Tensor) for x in coefs)  # lists hold floats here
        if fused is None and foreach is None:
            fused = not tensor_args and default_to_fused(params, grads)
            foreach = not tensor_args and not fused
        if (fused or foreach) and tensor_args:
            raise ValueError(
                "tensor lr/gamma/prev_lr/prev_gamma need the single-tensor path: pass foreach=False, "
                "fused=False (or capturable=True)"
            )
    if not params:
        return
    impl = _fused_adamo if fused else _multi_tensor_adamo if foreach else _single_tensor_adamo
    impl(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr=lr, beta1=beta1, beta2=beta2,
        eps=eps, weight_decay=weight_decay, gamma=gamma, delay=delay, prev_lr=prev_lr, prev_gamma=prev_gamma,
        exact=exact, amsgrad=amsgrad, maximize=maximize, capturable=capturable,
        increment_steps=increment_steps, out_lr=out_lr, out_gamma=out_gamma,
    )  # fmt: skip


class _Coefs(NamedTuple):
    """One step's coefficients: ``p += undo*m/d_prev`` (exact form), ``p *= wd``,
    ``p += (ncm*m + ncg*grad)/d`` with ``d = sqrt(v)/bc2_sqrt + eps``; ``g_t``, the effective factor, is
    what the next step needs. Python floats on the host path (0.0: a term known to be zero), tensors with
    capturable."""

    ncm: Scalar
    ncg: Scalar
    undo: Scalar
    wd: Scalar
    bc2_sqrt: Scalar
    bc2p_sqrt: Scalar
    g_t: Scalar


def _coefficients(
    t: float | Tensor,
    lr: Scalar,
    prev_lr: Scalar,
    gamma: Scalar,
    prev_gamma: Scalar | None,
    *,
    delay: int | None,
    beta1: float,
    beta2: float,
    weight_decay: float,
    exact: bool,
) -> _Coefs:
    """The coefficients after ``t >= 1`` steps: Python arithmetic for a float ``t`` (tensors only where an
    argument is one), float64 tensor ops without a host sync for a tensor ``t`` (one count or a vector)."""
    lr, prev_lr, gamma = cast(Scalar, _f64(lr)), cast(Scalar, _f64(prev_lr)), cast(Scalar, _f64(gamma))
    prev_gamma = _f64(prev_gamma)
    g_t = ramp(gamma, t, delay)
    bc1 = 1 - beta1**t
    bc2_sqrt = (1 - beta2**t) ** 0.5
    wd = 1 - lr * weight_decay
    # the previous factor (0 at the first step, which has no previous offset); 0.0 where the host knows it
    first: Scalar = 0.0
    if not isinstance(t, Tensor):
        g_p = 0.0 if t <= 1 else ramp(gamma, t - 1, delay) if prev_gamma is None else prev_gamma
    elif is_zero(gamma) and (prev_gamma is None or is_zero(prev_gamma)):
        g_p = 0.0
    else:
        first = (t <= 1).to(F64)
        g_p = (ramp(gamma, t - 1, delay) if prev_gamma is None else prev_gamma) * (1 - first)
    if is_zero(g_p) or exact:
        undo = 0.0 if is_zero(g_p) else prev_lr * g_p / ((1 - beta1 ** (t - 1)) + first)
        bc2p_sqrt = 1.0 if is_zero(g_p) else ((1 - beta2 ** (t - 1)) + first) ** 0.5
        return _Coefs(-(lr * (1 + g_t) / bc1), 0.0, undo, wd, bc2_sqrt, bc2p_sqrt, g_t)
    if beta1 == 0:
        raise ValueError("the default AdamO form needs beta1 > 0 when gamma > 0 (or pass exact=True)")
    ncm = -((lr * (1 + g_t) - prev_lr * g_p / beta1) / bc1)
    ncg = -(prev_lr * g_p * (1 - beta1) / beta1 / bc1)
    return _Coefs(ncm, ncg, 0.0, wd, bc2_sqrt, 1.0, g_t)


def _cast(c: Any, dtype: torch.dtype) -> Any:
    """The coefficients (a NamedTuple) that meet a parameter, in its dtype (``g_t`` stays float64)."""
    return c._replace(
        **{f: x.to(dtype) for f, x in c._asdict().items() if isinstance(x, Tensor) and f != "g_t"}
    )


def _single_tensor_adamo(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor], state_steps: list[Tensor], *, lr: Coef, beta1: float, beta2: float,
    eps: float, weight_decay: float, gamma: Coef, delay: int | None, prev_lr: Coef, prev_gamma: Coef | None,
    exact: bool, amsgrad: bool, maximize: bool, capturable: bool, increment_steps: bool,
    out_lr: list[Tensor] | None, out_gamma: list[Tensor] | None,
) -> None:  # fmt: skip
    if increment_steps:
        for step_t in state_steps:
            step_t += 1
    rows: list[_Coefs] = [None] * len(params)  # type: ignore[list-item]
    grouped = Optimizer._group_tensors_by_device_and_dtype([params, state_steps], with_indices=True)  # type: ignore[list-item]
    for (_, dtype), ((_, steps), indices) in grouped.items():  # capturable: in each parameter's dtype
        for i, c in zip(indices, _coefficient_rows(
            _coefficients, cast(list[Tensor], steps), indices, dtype, capturable=capturable,
            coefs=(lr, prev_lr, gamma, prev_gamma), delay=delay, beta1=beta1, beta2=beta2,
            weight_decay=weight_decay, exact=exact,
        ), strict=True):  # fmt: skip
            rows[i] = c
    for i, param in enumerate(params):
        c = rows[i]
        grad = grads[i] if not maximize else -grads[i]
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        vd = max_exp_avg_sqs[i] if amsgrad else exp_avg_sq
        if not is_zero(c.undo):  # exact form: back to the base weights, with the previous denominator
            _addcdiv(param, (vd.sqrt() / c.bc2p_sqrt).add_(eps), exp_avg, c.undo)
        if weight_decay != 0:
            param.mul_(c.wd)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
        _addcdiv(param, (vd.sqrt() / c.bc2_sqrt).add_(eps), exp_avg, c.ncm, grad, c.ncg)
    if out_lr is not None or out_gamma is not None:
        _write_out(out_lr, out_gamma, lr, list(range(len(params))), rows)


def _addcdiv(
    param: Tensor, denom: Tensor, num: Tensor, coef: Scalar, num2: Tensor | None = None, coef2: Scalar = 0.0
) -> None:
    """``param += (coef*num + coef2*num2)/denom``: torch's scalar ``value=`` for Python-float coefficients,
    tensor coefficients folded into the numerator."""
    if isinstance(coef, Tensor) or isinstance(coef2, Tensor):
        num = num * coef
        if num2 is not None and isinstance(coef2, Tensor):
            num.addcmul_(num2, coef2)
        elif num2 is not None and coef2 != 0:
            num.add_(num2, alpha=float(coef2))
        param.addcdiv_(num, denom)
        return
    param.addcdiv_(num, denom, value=coef)
    if num2 is not None and coef2 != 0:
        param.addcdiv_(num2, denom, value=coef2)


def _multi_tensor_adamo(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor], state_steps: list[Tensor], *, lr: Coef, beta1: float, beta2: float,
    eps: float, weight_decay: float, gamma: Coef, delay: int | None, prev_lr: Coef, prev_gamma: Coef | None,
    exact: bool, amsgrad: bool, maximize: bool, capturable: bool, increment_steps: bool,
    out_lr: list[Tensor] | None, out_gamma: list[Tensor] | None,
) -> None:  # fmt: skip
    if not params:
        return
    lists: list[list[Tensor]] = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    if amsgrad:
        lists.append(max_exp_avg_sqs)
    grouped = Optimizer._group_tensors_by_device_and_dtype(lists, with_indices=True)  # type: ignore[arg-type]
    for dev_lists, indices in grouped.values():
        dev_params, dev_grads, dev_m, dev_v, dev_steps = (cast(list[Tensor], x) for x in dev_lists[:5])
        dev_vd = cast(list[Tensor], dev_lists[5]) if amsgrad else dev_v
        if maximize:
            dev_grads = cast(list[Tensor], torch._foreach_neg(dev_grads))
        if increment_steps:  # as torch: a CPU tensor 1 keeps CPU step counts off the slow scalar path
            if dev_steps[0].is_cpu:
                torch._foreach_add_(dev_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
            else:
                torch._foreach_add_(dev_steps, 1.0)
        rows = _coefficient_rows(
            _coefficients, dev_steps, indices, dev_params[0].dtype, capturable=capturable,
            coefs=(lr, prev_lr, gamma, prev_gamma), delay=delay, beta1=beta1, beta2=beta2,
            weight_decay=weight_decay, exact=exact,
        )  # fmt: skip
        undo = [j for j, c in enumerate(rows) if not is_zero(c.undo)]
        if undo:  # exact form: back to the base weights, with the previous denominators
            denom_prev = torch._foreach_sqrt([dev_vd[j] for j in undo])
            torch._foreach_div_(denom_prev, [rows[j].bc2p_sqrt for j in undo])  # type: ignore[misc]
            torch._foreach_add_(denom_prev, eps)
            _foreach_addcdiv([dev_params[j] for j in undo], [dev_m[j] for j in undo], denom_prev,
                             [rows[j].undo for j in undo])  # fmt: skip
            del denom_prev
        if weight_decay != 0:
            torch._foreach_mul_(dev_params, [c.wd for c in rows])  # type: ignore[misc]
        torch._foreach_lerp_(dev_m, dev_grads, 1 - beta1)
        torch._foreach_mul_(dev_v, beta2)
        torch._foreach_addcmul_(dev_v, dev_grads, dev_grads, 1 - beta2)
        if amsgrad:
            torch._foreach_maximum_(dev_vd, dev_v)
        denom = torch._foreach_sqrt(dev_vd)
        torch._foreach_div_(denom, [c.bc2_sqrt for c in rows])  # type: ignore[misc]
        torch._foreach_add_(denom, eps)
        _foreach_addcdiv(dev_params, dev_m, denom, [c.ncm for c in rows])
        cg = [j for j, c in enumerate(rows) if not is_zero(c.ncg)]
        if cg:
            _foreach_addcdiv([dev_params[j] for j in cg], [dev_grads[j] for j in cg], [denom[j] for j in cg],
                             [rows[j].ncg for j in cg])  # fmt: skip
        if out_lr is not None or out_gamma is not None:
            _write_out(out_lr, out_gamma, lr, indices, rows)


def _coefficient_rows(
    fn: Callable[..., Any], steps: list[Tensor], indices: list[int], dtype: torch.dtype | None, *,
    capturable: bool, coefs: tuple[Coef | None, ...], **kw: Any,
) -> list[Any]:  # fmt: skip
    """``fn(t, *coefs, **kw)`` (a NamedTuple of coefficients) for each parameter (``indices``: its position
    in the per-parameter lists, ``steps``: its step count). Host: Python floats (tensors where a coefficient
    is one), from the counts read at once, computed once per count. Capturable: float64 tensor ops on the
    counts' device cast to ``dtype``, vectorised over the parameters where every value is a scalar, else
    computed once per step tensor and values (population: one shared count)."""
    rows = []
    if not capturable:
        by_key: dict[tuple[Any, ...], Any] = {}
        for s, i in zip(torch.stack(steps).tolist(), indices, strict=True):
            vals = [_pick(x, i) for x in coefs]
            key = (s, *(id(v) if isinstance(v, Tensor) else v for v in vals))
            if key not in by_key:
                by_key[key] = fn(s, *vals, **kw)
            rows.append(by_key[key])
        return rows
    if all(_scalar_like(x) for x in coefs):
        c = _cast(
            fn(torch.stack(steps).to(F64), *[_gather(x, indices) for x in coefs], **kw), cast(Any, dtype)
        )
        cols = [list(x.unbind()) if isinstance(x, Tensor) and x.dim() else [x] * len(steps) for x in c]
        return [type(c)(*row) for row in zip(*cols, strict=True)]
    cache: dict[tuple[int, ...], Any] = {}
    for s, i in zip(steps, indices, strict=True):
        vals = [_pick(x, i) for x in coefs]
        key = (id(s), *map(id, vals))
        if key not in cache:
            cache[key] = _cast(fn(s.to(F64), *vals, **kw), cast(Any, dtype))
        rows.append(cache[key])
    return rows


def _foreach_addcdiv(
    params: list[Tensor], nums: list[Tensor], denoms: list[Tensor] | tuple[Tensor, ...], coefs: list[Any]
) -> None:
    """``params += coef*num/denom`` per tensor: Python-float coefficients as torch's scalar list, 0-dim
    tensors (capturable) folded into the numerators."""
    if isinstance(coefs[0], Tensor):
        torch._foreach_addcdiv_(params, torch._foreach_mul(nums, cast(list[Tensor], coefs)), denoms)
    else:
        torch._foreach_addcdiv_(params, nums, denoms, cast(list[float], coefs))


def _write_out(
    out_lr: list[Tensor] | None,
    out_gamma: list[Tensor] | None,
    lr: Coef,
    indices: list[int],
    rows: list[_Coefs],
) -> None:
    """Capturable: this step's lr and effective factor into the parameters' ``out_lr`` / ``out_gamma``."""
    for out, vals in ((out_lr, [_pick(lr, i) for i in indices]), (out_gamma, [c.g_t for c in rows])):
        if out is not None and all(isinstance(v, Tensor) for v in vals):
            torch._foreach_copy_([out[i] for i in indices], cast(list[Tensor], vals))
        elif out is not None:
            for i, v in zip(indices, vals, strict=True):
                out[i].fill_(cast(float, v))


def _fused_adamo(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor], state_steps: list[Tensor], *, lr: Coef, beta1: float, beta2: float,
    eps: float, weight_decay: float, gamma: Coef, delay: int | None, prev_lr: Coef, prev_gamma: Coef | None,
    exact: bool, amsgrad: bool, maximize: bool, capturable: bool, increment_steps: bool,
    out_lr: list[Tensor] | None, out_gamma: list[Tensor] | None,
) -> None:  # fmt: skip
    if not params:
        return
    lists: list[list[Tensor]] = [params, grads, exp_avgs, exp_avg_sqs, state_steps]
    if amsgrad:
        lists.append(max_exp_avg_sqs)
    grouped = Optimizer._group_tensors_by_device_and_dtype(lists, with_indices=True)  # type: ignore[arg-type]
    for device, dtype in grouped:
        fused_kernels().check_fused_supported_kind(device, dtype, "AdamO")
    if increment_steps:
        torch._foreach_add_(state_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
    for group_lists, indices in grouped.values():
        dev_lists = [cast(list[Tensor], x) for x in group_lists]
        rows = _coefficient_rows(
            _coefficients, dev_lists[4], indices, None, capturable=False,
            coefs=(lr, prev_lr, gamma, prev_gamma), delay=delay, beta1=beta1, beta2=beta2,
            weight_decay=weight_decay, exact=exact,
        )  # fmt: skip
        for c in dict.fromkeys(rows):  # one kernel launch per set of coefficients (normally one)
            idx = [i for i, r in enumerate(rows) if r == c]
            sel = [xs if len(idx) == len(rows) else [xs[i] for i in idx] for xs in dev_lists]
            fused_kernels().adamo_fused_update(
                *sel[:4], sel[5] if amsgrad else None, wd_factor=float(c.wd), beta1=beta1,
                beta2=beta2, bc2_sqrt=float(c.bc2_sqrt), eps=eps, cm=-float(c.ncm), cg=-float(c.ncg),
                undo=float(c.undo), bc2p_sqrt=float(c.bc2p_sqrt), maximize=maximize,
            )  # fmt: skip


# ------------------------------------------------------------------------------------------- capturable
def _scalar_like(x: Coef | None) -> bool:
    """A float, a 0-dim tensor, or a list of 0-dim tensors (what the capturable foreach path takes)."""
    if isinstance(x, (list, tuple)):
        return all(isinstance(v, Tensor) and v.dim() == 0 for v in x)
    return not isinstance(x, Tensor) or x.dim() == 0


def _check_capturable(
    params: list[Tensor], coefs: tuple[Coef | None, ...], steps: list[Tensor] | None = None,
    error: type[Exception] = RuntimeError,
) -> None:  # fmt: skip
    """Capturable: parameters on ``capturable_devices()``, their step counts and tensor lr/gamma/prev_lr/
    prev_gamma (one per parameter, or one for all) on the parameters' device."""
    supported = capturable_devices()
    for p, s in zip(params, params if steps is None else steps, strict=True):
        if p.device.type not in supported or s.device != p.device:
            step = "" if s.device == p.device else f", its step count on {s.device}"
            raise RuntimeError(
                f"AdamO(capturable=True) needs parameters on supported devices: {supported}, each with its "
                f"step count (got {p.device}{step}): pass capturable=False"
            )
    devices = {p.device for p in params}
    for x in coefs:
        pairs = zip(x, params, strict=True) if isinstance(x, (list, tuple)) else [(x, p) for p in params[:1]]
        for v, p in pairs:
            if isinstance(v, Tensor) and {v.device} != ({p.device} if x is not v else devices):
                raise error(
                    f"capturable AdamO needs tensor lr/gamma/prev_lr/prev_gamma on the parameters' device "
                    f"(got one on {v.device}, parameters on {', '.join(sorted(map(str, devices)))}): create "
                    "it there, e.g. torch.tensor(1e-3, device=...); a CUDA graph would freeze its value"
                )


def _pick(x: Coef | None, i: int) -> Scalar | None:
    return x[i] if isinstance(x, (list, tuple)) else cast(Scalar | None, x)


def _f64(x: Scalar | None) -> Scalar | None:
    return x.to(F64) if isinstance(x, Tensor) else x


def _gather(x: Coef | None, idx: list[int]) -> Scalar | None:
    """A per-parameter list as a float64 vector over ``idx``; one value for all as it is."""
    if isinstance(x, (list, tuple)):
        return torch.stack([x[i] for i in idx]).to(F64)
    return cast(Scalar | None, x)


def adamo_base_offset(
    params: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor], state_steps: list[Tensor], *,
    lr: Coef, gamma: Coef, beta1: float, beta2: float, eps: float, inplace: bool = False,
    foreach: bool | None = None,
) -> list[Tensor]:  # fmt: skip
    r"""AdamO's base weights from the overshoot weights ``params``:
    ``theta = theta' + lr*gamma*m/(bc1_t*d_t)``, ``bc1_t = 1-beta1^t``,
    ``d_t = sqrt(v)/sqrt(1-beta2^t) + eps``. Where lr or gamma holds a tensor, with tensor ops only (no host
    sync); with Python floats, as ``adamo``'s host path, from the step counts read at once.

    Returns new tensors, or (``inplace=True``) adds the offset to ``params`` and returns them.

    Args:
        exp_avgs, exp_avg_sqs: the moments after the last step (with amsgrad: ``max_exp_avg_sqs``).
        state_steps: step counts ``t`` after the last step (one tensor may serve several parameters); at
            ``t = 0`` pass ``gamma = 0`` (the offset is then 0).
        lr, gamma: the last step's lr and *effective* factor (``ramp(gamma, t, delay)``, e.g. the
            ``out_lr`` / ``out_gamma`` of ``adamo``): floats or tensors broadcastable against each
            parameter (population: ``gamma`` of shape ``[N, 1, ..., 1]``), or lists with one float or one
            tensor per parameter. Tensor arithmetic in float64, then cast to the parameters' dtype.
        foreach: None picks foreach where every lr/gamma value is a float or 0-dim tensor.
    """
    host = not any(
        isinstance(v, Tensor) for x in (lr, gamma) for v in (x if isinstance(x, (list, tuple)) else [x])
    )
    scalars = host or (_scalar_like(lr) and _scalar_like(gamma))
    if foreach and not scalars:
        raise ValueError(
            "foreach adamo_base_offset takes lr/gamma as floats, 0-dim tensors or lists of 0-dim "
            "tensors: pass foreach=False for broadcast (e.g. per-member) tensors"
        )
    out = list(params)
    if not params:
        return out
    lists = [params, exp_avgs, exp_avg_sqs, state_steps]
    for (_, dtype), (dev_lists, indices) in Optimizer._group_tensors_by_device_and_dtype(lists, True).items():  # type: ignore[arg-type]
        dev_p, dev_m, dev_v, dev_s = (cast(list[Tensor], x) for x in dev_lists)
        rows = _coefficient_rows(
            _offset_coefficients, dev_s, indices, dtype, capturable=not host, coefs=(lr, gamma), beta1=beta1,
            beta2=beta2,
        )  # fmt: skip
        coefs, bc2s = [c.coef for c in rows], [c.bc2_sqrt for c in rows]
        if foreach is not False and scalars:
            denom = torch._foreach_sqrt(dev_v)
            torch._foreach_div_(denom, bc2s)
            torch._foreach_add_(denom, eps)
            res = dev_p if inplace else [p.clone() for p in dev_p]
            _foreach_addcdiv(res, dev_m, denom, coefs)
        else:
            res = [
                (p.addcdiv_ if inplace else p.addcdiv)(m * c, (v.sqrt() / b).add_(eps))
                for p, m, v, c, b in zip(dev_p, dev_m, dev_v, coefs, bc2s, strict=True)
            ]
        for i, r in zip(indices, res, strict=True):
            out[i] = r
    return out


class _Offset(NamedTuple):
    coef: Scalar  # lr*gamma/bc1_t
    bc2_sqrt: Scalar


def _offset_coefficients(
    t: float | Tensor, lr: Scalar, gamma: Scalar, *, beta1: float, beta2: float
) -> _Offset:
    """The base offset's coefficients after ``t`` steps: Python floats for a float ``t`` and float
    coefficients, else float64 tensors; the bias corrections read 1 at ``t = 0`` (no 0/0)."""
    first = (t < 1).to(F64) if isinstance(t, Tensor) else float(t < 1)
    return _Offset(
        cast(Scalar, _f64(lr)) * cast(Scalar, _f64(gamma)) / ((1 - beta1**t) + first),
        ((1 - beta2**t) + first) ** 0.5,
    )
