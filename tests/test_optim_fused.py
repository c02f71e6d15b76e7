"""Fused Triton path: checked against foreach in the Triton CPU interpreter, compiled for sm_90, on CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed: the fused path is unavailable")

# Runs in a fresh interpreter: TRITON_INTERPRET must be set before the kernels are defined.
COMPARE = textwrap.dedent(
    """
    import torch
    from overshoot import AdamO, SGDO
    from overshoot.optim import _triton

    LAUNCHES = {"sgdo": 0, "adamo": 0}  # the fused runs must really go through the kernels

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            LAUNCHES[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    _triton.sgdo_fused_update = counted("sgdo", _triton.sgdo_fused_update)
    _triton.adamo_fused_update = counted("adamo", _triton.adamo_fused_update)

    SHAPES = [(3,), (30, 20), (2049,), (1,)]

    def run(cls, fused, steps, **kw):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(s, device=DEVICE)) for s in SHAPES]
        opt = cls(ps, fused=fused, foreach=not fused, **kw)
        g = torch.Generator(device=DEVICE).manual_seed(1)
        out = []
        for k in range(steps):
            for i, p in enumerate(ps):
                stale = i == len(ps) - 1 and k % 3 == 1  # a parameter without a gradient on some steps
                p.grad = None if stale else torch.randn(p.shape, generator=g, device=DEVICE)
            grads = [None if p.grad is None else p.grad.clone() for p in ps]
            opt.step()
            assert all(a is None or torch.equal(a, p.grad) for a, p in zip(grads, ps)), "p.grad modified"
        with opt.base_weights():
            out = [p.detach().clone() for p in ps]
        return [p.detach().clone() for p in ps] + out

    CONFIGS = [
        (SGDO, dict(lr=0.1, gamma=3.0, weight_decay=0.01)),
        (SGDO, dict(lr=0.1, gamma=0.0, dampening=0.3, maximize=True)),
        (AdamO, dict(lr=0.01, delay=2)),
        (AdamO, dict(lr=0.01, delay=2, exact=True, amsgrad=True, weight_decay=0.1, maximize=True)),
    ]
    worst = 0.0
    for cls, kw in CONFIGS:
        a, b = run(cls, True, STEPS, **kw), run(cls, False, STEPS, **kw)
        for x, y in zip(a, b):
            worst = max(worst, ((x - y).abs().max() / y.abs().max().clamp_min(1e-30)).item())
    print("worst relative difference", worst, "fused launches", LAUNCHES)
    assert worst < TOL, worst
    assert LAUNCHES["sgdo"] >= 2 * STEPS and LAUNCHES["adamo"] >= 2 * STEPS, LAUNCHES
    """
)


def test_fused_kernels_match_foreach_in_triton_interpreter() -> None:
    env = dict(os.environ, TRITON_INTERPRET="1")
    code = "DEVICE, STEPS, TOL = 'cpu', 4, 2e-6\n" + COMPARE
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_fused_kernels_compile_for_sm90_with_vector_loads() -> None:
    """Compiles both kernels for an H100 (no GPU needed) and checks for 128-bit loads and IEEE sqrt/div."""
    tl = pytest.importorskip("triton.language")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from overshoot.optim import _triton as kt

    head = {"addr": "*i64", "numels": "*i64", "blk_t": "*i32", "blk_s": "*i64", "T": "i32"}
    sgdo_sig = head | dict.fromkeys(["undo", "mom", "damp1", "step_c", "wd"], "fp32")
    adamo_sig = head | dict.fromkeys(
        ["wd_factor", "beta1", "beta2", "bc2_sqrt", "eps", "cm", "cg", "undo", "bc2p_sqrt"], "fp32"
    )
    cases = [
        (kt._sgdo_kernel, sgdo_sig, dict(FIRST=False, MAXIMIZE=False, HAS_WD=True, UNDO=True)),
        (
            kt._adamo_kernel,
            adamo_sig,
            dict(MAXIMIZE=False, HAS_WD=True, AMSGRAD=False, UNDO=False, HAS_CG=True),
        ),
    ]
    for fn, sig, flags in cases:
        consts = dict(DTYPE=tl.float32, ALIGNED=True, BLOCK=kt.BLOCK, ITERS=kt.ITERS, **flags)
        src = ASTSource(fn=fn, signature=sig | dict.fromkeys(consts, "constexpr"), constexprs=consts)
        ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": kt.NUM_WARPS}).asm[
            "ptx"
        ]
        assert "ld.global.v4.b32" in ptx and "st.global.v4.b32" in ptx
        if fn is kt._adamo_kernel:
            assert "sqrt.rn.f32" in ptx and "div.rn.f32" in ptx


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the fused path is CUDA-only)")
def test_fused_matches_foreach_on_cuda() -> None:
    namespace: dict[str, object] = {"DEVICE": "cuda", "STEPS": 50, "TOL": 1e-5}
    exec(COMPARE, namespace)
