"""Fused SGDO / AdamO updates: one Triton launch per (device, dtype) over a whole list of tensors.

Each launch reads a device table of tensor addresses and a table mapping every program (block of
``BLOCK`` elements) to its tensor and offset, so all parameters of a group are updated by a single
kernel whatever their number. Full blocks use unmasked (vectorisable) loads; a tensor's last partial
block is masked. Arithmetic is in float32 (float16/bfloat16 storage is upcast), with IEEE-rounded sqrt
and division. On a CPU the kernels run under the Triton interpreter (``TRITON_INTERPRET=1``), which the
tests use to check them against the foreach path.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor

try:  # triton is optional: without it the fused path is simply unavailable
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the installation
    HAS_TRITON = False

BLOCK = 2048  # elements per vectorised access group (NUM_WARPS * 32 threads, 16 bytes each, several times)
ITERS = 4  # BLOCKs per program: more loads in flight and fewer table look-ups per byte
NUM_WARPS = 8
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # parameter dtypes the kernels take


def interpret_enabled() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def fused_available(device: torch.device) -> bool:
    """Whether the fused path can run on ``device`` (CUDA with triton, or CPU under TRITON_INTERPRET=1)."""
    if not HAS_TRITON:
        return False
    if device.type == "cuda":
        return torch.cuda.is_available()
    return device.type == "cpu" and interpret_enabled()


def check_fused_supported(params: list[Tensor], name: str) -> None:
    """Raise RuntimeError naming the fix when ``fused=True`` cannot run on these parameters."""
    for device, dtype in {(p.device, p.dtype) for p in params}:
        check_fused_supported_kind(device, dtype, name)


def check_fused_supported_kind(device: torch.device, dtype: torch.dtype, name: str) -> None:
    """Raise RuntimeError naming the fix when ``fused=True`` cannot run on ``dtype`` tensors on ``device``."""
    if not fused_available(device):
        raise RuntimeError(
            f"{name}(fused=True) needs a CUDA device and triton (got a parameter on {device}, "
            f"triton {'installed' if HAS_TRITON else 'missing'}): use foreach=True or leave fused=None"
        )
    if dtype not in FUSED_DTYPES:
        raise RuntimeError(
            f"{name}(fused=True) supports float32, float16 and bfloat16 parameters (got {dtype}): "
            "use foreach=True or leave fused=None"
        )


_TL_DTYPES: dict[torch.dtype, Any] = {}
if HAS_TRITON:
    _TL_DTYPES = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}

_BLOCK_CACHE: OrderedDict[tuple[Any, ...], tuple[Tensor, Tensor, Tensor]] = OrderedDict()
_ADDR_CACHE: OrderedDict[tuple[Any, ...], tuple[Tensor, bool]] = OrderedDict()
_CACHE_SIZE = 16


def _to_device(host: Tensor, device: torch.device) -> Tensor:
    if device.type == "cpu":
        return host
    return host.pin_memory().to(device, non_blocking=True)


def _cached(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], make: Any) -> Any:
    hit = cache.get(key)
    if hit is None:
        hit = make()
        cache[key] = hit
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return hit


def live_tables() -> list[Any]:
    """Every cached device table. A CUDA graph that captured a fused launch holds these addresses: keep the
    returned list as long as the graph (the cache may drop an entry meanwhile)."""
    return [*_ADDR_CACHE.values(), *_BLOCK_CACHE.values()]


def _tables(lists: list[list[Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """(addresses [K*T], numels [T], program->tensor [B], program->start [B], all 16-byte aligned);
    each program updates BLOCK*ITERS elements."""
    first = lists[0]
    device = first[0].device
    numels = tuple(map(Tensor.numel, first))

    chunk = BLOCK * ITERS

    def make_blocks() -> tuple[Tensor, Tensor, Tensor]:
        blk_t: list[int] = []
        blk_s: list[int] = []
        for i, n in enumerate(numels):
            starts = range(0, n, chunk)
            blk_t.extend([i] * len(starts))
            blk_s.extend(starts)
        return (
            _to_device(torch.tensor(numels, dtype=torch.int64), device),
            _to_device(torch.tensor(blk_t, dtype=torch.int32), device),
            _to_device(torch.tensor(blk_s, dtype=torch.int64), device),
        )

    numel_t, blk_t, blk_s = _cached(_BLOCK_CACHE, (device, numels, chunk), make_blocks)
    ptrs = tuple(
        itertools.chain.from_iterable(map(Tensor.data_ptr, lst) for lst in lists)
    )  # per step: no genexpr

    def make_addr() -> tuple[Tensor, bool]:
        _check_lists(lists)  # validated once per distinct set of tensors
        return _to_device(torch.tensor(ptrs, dtype=torch.int64), device), all(x % 16 == 0 for x in ptrs)

    addr, aligned = _cached(_ADDR_CACHE, (device, numels, ptrs), make_addr)
    return addr, numel_t, blk_t, blk_s, aligned


def _check_lists(lists: list[list[Tensor]]) -> None:
    ref = lists[0]
    for lst in lists:
        if len(lst) != len(ref):
            raise ValueError("fused update: tensor lists differ in length")
        for a, b in zip(lst, ref, strict=True):
            if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
                raise ValueError("fused update: tensors of one parameter differ in shape, dtype or device")
            if not a.is_contiguous():
                raise ValueError("fused update: tensors must be contiguous")


if HAS_TRITON:

    @triton.jit
    def _sgdo_math(p, g, b, undo, mom, damp1, step_c, wd, FIRST, MAXIMIZE, HAS_WD, UNDO):
        p = p.to(tl.float32)
        g = g.to(tl.float32)
        if MAXIMIZE:
            g = -g
        if HAS_WD:
            g = g + wd * p
        if FIRST:
            b = g
        else:
            b = b.to(tl.float32)
            if UNDO:
                p = p + undo * b
            b = mom * b + damp1 * g
        p = p + step_c * b
        return p, b

    @triton.jit
    def _sgdo_kernel(
        addr,
        numels,
        blk_t,
        blk_s,
        T,
        undo,
        mom,
        damp1,
        step_c,
        wd,
        DTYPE: tl.constexpr,
        FIRST: tl.constexpr,
        MAXIMIZE: tl.constexpr,
        HAS_WD: tl.constexpr,
        UNDO: tl.constexpr,
        ALIGNED: tl.constexpr,
        BLOCK: tl.constexpr,
        ITERS: tl.constexpr,
    ):
        pid = tl.program_id(0)
        t = tl.load(blk_t + pid)
        s = tl.load(blk_s + pid)
        n = tl.load(numels + t)
        pp = tl.load(addr + t).to(tl.pointer_type(DTYPE))
        gp = tl.load(addr + T + t).to(tl.pointer_type(DTYPE))
        bp = tl.load(addr + 2 * T + t).to(tl.pointer_type(DTYPE))
        if ALIGNED:
            pp = tl.multiple_of(pp, 16)
            gp = tl.multiple_of(gp, 16)
            bp = tl.multiple_of(bp, 16)
            s = tl.multiple_of(s, BLOCK * ITERS)
        for j in tl.static_range(ITERS):
            offs = s + j * BLOCK + tl.arange(0, BLOCK)
            if s + (j + 1) * BLOCK <= n:
                p = tl.load(pp + offs)
                g = tl.load(gp + offs)
                if FIRST:  # noqa: SIM108 (constexpr branch, kept as a statement for triton)
                    b = g
                else:
                    b = tl.load(bp + offs)
                p, b = _sgdo_math(p, g, b, undo, mom, damp1, step_c, wd, FIRST, MAXIMIZE, HAS_WD, UNDO)
                tl.store(pp + offs, p.to(DTYPE))
                tl.store(bp + offs, b.to(DTYPE))
            elif s + j * BLOCK < n:
                mask = offs < n
                p = tl.load(pp + offs, mask=mask)
                g = tl.load(gp + offs, mask=mask)
                if FIRST:  # noqa: SIM108 (constexpr branch, kept as a statement for triton)
                    b = g
                else:
                    b = tl.load(bp + offs, mask=mask)
                p, b = _sgdo_math(p, g, b, undo, mom, damp1, step_c, wd, FIRST, MAXIMIZE, HAS_WD, UNDO)
                tl.store(pp + offs, p.to(DTYPE), mask=mask)
                tl.store(bp + offs, b.to(DTYPE), mask=mask)

    @triton.jit
    def _adamo_math(
        p,
        g,
        m,
        v,
        vmax,
        wd_factor,
        beta1,
        beta2,
        bc2_sqrt,
        eps,
        cm,
        cg,
        undo,
        bc2p_sqrt,
        MAXIMIZE,
        HAS_WD,
        AMSGRAD,
        UNDO,
        HAS_CG,
    ):
        p = p.to(tl.float32)
        g = g.to(tl.float32)
        m = m.to(tl.float32)
        v = v.to(tl.float32)
        vmax = vmax.to(tl.float32)
        if MAXIMIZE:
            g = -g
        if UNDO:  # exact form: undo the previous offset with the previous denominator
            if AMSGRAD:  # noqa: SIM108
                vprev = vmax
            else:
                vprev = v
            p = p + undo * tl.div_rn(m, tl.div_rn(tl.sqrt_rn(vprev), bc2p_sqrt) + eps)
        if HAS_WD:
            p = p * wd_factor
        m = m + (1.0 - beta1) * (g - m)
        v = beta2 * v + (1.0 - beta2) * (g * g)
        if AMSGRAD:
            vmax = tl.maximum(vmax, v)
            vd = vmax
        else:
            vd = v
        denom = tl.div_rn(tl.sqrt_rn(vd), bc2_sqrt) + eps
        upd = cm * m
        if HAS_CG:
            upd = upd + cg * g
        p = p - tl.div_rn(upd, denom)
        return p, m, v, vmax

    @triton.jit
    def _adamo_kernel(
        addr,
        numels,
        blk_t,
        blk_s,
        T,
        wd_factor,
        beta1,
        beta2,
        bc2_sqrt,
        eps,
        cm,
        cg,
        undo,
        bc2p_sqrt,
        DTYPE: tl.constexpr,
        MAXIMIZE: tl.constexpr,
        HAS_WD: tl.constexpr,
        AMSGRAD: tl.constexpr,
        UNDO: tl.constexpr,
        HAS_CG: tl.constexpr,
        ALIGNED: tl.constexpr,
        BLOCK: tl.constexpr,
        ITERS: tl.constexpr,
    ):
        pid = tl.program_id(0)
        t = tl.load(blk_t + pid)
        s = tl.load(blk_s + pid)
        n = tl.load(numels + t)
        pp = tl.load(addr + t).to(tl.pointer_type(DTYPE))
        gp = tl.load(addr + T + t).to(tl.pointer_type(DTYPE))
        mp = tl.load(addr + 2 * T + t).to(tl.pointer_type(DTYPE))
        vp = tl.load(addr + 3 * T + t).to(tl.pointer_type(DTYPE))
        xp = vp
        if AMSGRAD:
            xp = tl.load(addr + 4 * T + t).to(tl.pointer_type(DTYPE))
        if ALIGNED:
            pp = tl.multiple_of(pp, 16)
            gp = tl.multiple_of(gp, 16)
            mp = tl.multiple_of(mp, 16)
            vp = tl.multiple_of(vp, 16)
            xp = tl.multiple_of(xp, 16)
            s = tl.multiple_of(s, BLOCK * ITERS)
        for j in tl.static_range(ITERS):
            offs = s + j * BLOCK + tl.arange(0, BLOCK)
            if s + (j + 1) * BLOCK <= n:
                p = tl.load(pp + offs)
                g = tl.load(gp + offs)
                m = tl.load(mp + offs)
                v = tl.load(vp + offs)
                if AMSGRAD:  # noqa: SIM108
                    x = tl.load(xp + offs)
                else:
                    x = v
                p, m, v, x = _adamo_math(
                    p, g, m, v, x, wd_factor, beta1, beta2, bc2_sqrt, eps, cm, cg, undo, bc2p_sqrt,
                    MAXIMIZE, HAS_WD, AMSGRAD, UNDO, HAS_CG,
                )  # fmt: skip
                tl.store(pp + offs, p.to(DTYPE))
                tl.store(mp + offs, m.to(DTYPE))
                tl.store(vp + offs, v.to(DTYPE))
                if AMSGRAD:
                    tl.store(xp + offs, x.to(DTYPE))
            elif s + j * BLOCK < n:
                mask = offs < n
                p = tl.load(pp + offs, mask=mask)
                g = tl.load(gp + offs, mask=mask)
                m = tl.load(mp + offs, mask=mask)
                v = tl.load(vp + offs, mask=mask)
                if AMSGRAD:  # noqa: SIM108
                    x = tl.load(xp + offs, mask=mask)
                else:
                    x = v
                p, m, v, x = _adamo_math(
                    p, g, m, v, x, wd_factor, beta1, beta2, bc2_sqrt, eps, cm, cg, undo, bc2p_sqrt,
                    MAXIMIZE, HAS_WD, AMSGRAD, UNDO, HAS_CG,
                )  # fmt: skip
                tl.store(pp + offs, p.to(DTYPE), mask=mask)
                tl.store(mp + offs, m.to(DTYPE), mask=mask)
                tl.store(vp + offs, v.to(DTYPE), mask=mask)
                if AMSGRAD:
                    tl.store(xp + offs, x.to(DTYPE), mask=mask)


def sgdo_fused_update(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    first: bool,
    undo: float,
    momentum: float,
    damp1: float,
    step_c: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """In place, for same-device same-dtype lists: ``p += undo*b; b = momentum*b + damp1*g; p += step_c*b``.

    ``g`` is the (negated if ``maximize``, L2-decayed) gradient; with ``first`` the buffer is set to ``g``.
    """
    if not params:
        return
    lists = [params, grads, bufs]
    addr, numel_t, blk_t, blk_s, aligned = _tables(lists)
    _sgdo_kernel[(blk_t.numel(),)](
        addr, numel_t, blk_t, blk_s, len(params),
        float(undo), float(momentum), float(damp1), float(step_c), float(weight_decay),
        DTYPE=_TL_DTYPES[params[0].dtype], FIRST=first, MAXIMIZE=maximize, HAS_WD=weight_decay != 0,
        UNDO=undo != 0, ALIGNED=aligned, BLOCK=BLOCK, ITERS=ITERS, num_warps=NUM_WARPS,
    )  # fmt: skip


def adamo_fused_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor] | None,
    *,
    wd_factor: float,
    beta1: float,
    beta2: float,
    bc2_sqrt: float,
    eps: float,
    cm: float,
    cg: float,
    undo: float,
    bc2p_sqrt: float,
    maximize: bool,
) -> None:
    """In place, for same-device same-dtype lists sharing one step count (see ``adamo`` for the maths).

    ``p += undo*m/(sqrt(v_prev)/bc2p_sqrt + eps)`` (exact form only), ``p *= wd_factor``, moments
    updated, then ``p -= (cm*m + cg*g) / (sqrt(v)/bc2_sqrt + eps)``.
    """
    if not params:
        return
    amsgrad = max_exp_avg_sqs is not None
    lists = [params, grads, exp_avgs, exp_avg_sqs]
    if max_exp_avg_sqs is not None:
        lists.append(max_exp_avg_sqs)
    addr, numel_t, blk_t, blk_s, aligned = _tables(lists)
    _adamo_kernel[(blk_t.numel(),)](
        addr, numel_t, blk_t, blk_s, len(params),
        float(wd_factor), float(beta1), float(beta2), float(bc2_sqrt), float(eps),
        float(cm), float(cg), float(undo), float(bc2p_sqrt),
        DTYPE=_TL_DTYPES[params[0].dtype], MAXIMIZE=maximize, HAS_WD=wd_factor != 1.0, AMSGRAD=amsgrad,
        UNDO=undo != 0, HAS_CG=cg != 0, ALIGNED=aligned, BLOCK=BLOCK, ITERS=ITERS, num_warps=NUM_WARPS,
    )  # fmt: skip
