"""AdamO against torch AdamW, the two-model definition, its foreach and population paths (CPU, float64)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from overshoot import AdamO
from overshoot.optim.adamo import DEFAULT_FORM_TOLERANCE, adamo
from overshoot.optim.reference import TwoModelAdam

DT = torch.float64


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)).to(DT)


def batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 6, generator=g, dtype=DT), torch.randn(16, 3, generator=g, dtype=DT))
        for _ in range(n)
    ]


def loss_at(model: torch.nn.Module, xy, params=None) -> torch.Tensor:
    x, y = xy
    out = model(x) if params is None else functional_call(model, params, (x,))
    return ((out - y) ** 2).mean()


def train(model, opt, data, sched=None) -> None:
    for xy in data:
        opt.zero_grad()
        loss_at(model, xy).backward()
        opt.step()
        if sched is not None:
            sched.step()


def max_diff(a, b) -> float:
    return max((x.detach() - y.detach()).abs().max().item() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_gamma0_equals_adamw(foreach: bool, amsgrad: bool) -> None:
    data = batches(200)
    m1, m2 = make_mlp(), make_mlp()
    kw = dict(lr=1e-2, weight_decay=0.05, amsgrad=amsgrad, foreach=foreach)
    train(m1, AdamO(m1.parameters(), gamma=0.0, **kw), data)
    train(m2, torch.optim.AdamW(m2.parameters(), **kw), data)
    assert max_diff(m1.parameters(), m2.parameters()) == 0.0  # same arithmetic as torch: bit-identical


def two_model_diffs(
    exact: bool, delay: int | None, steps: int, scheduled: bool = False, amsgrad: bool = False
):
    """Max over the run of |AdamO - two-model| for the overshoot and the base weights, and the scale."""
    data = batches(steps, seed=5)
    model = make_mlp()
    names = [n for n, _ in model.named_parameters()]
    init = [p.detach().clone() for p in model.parameters()]
    ref = TwoModelAdam(init, lr=1e-2, weight_decay=0.0, gamma=5.0, delay=delay, amsgrad=amsgrad)
    opt = AdamO(
        model.parameters(), lr=1e-2, weight_decay=0.0, gamma=5.0, delay=delay, exact=exact, amsgrad=amsgrad
    )
    scheds = []
    if scheduled:
        scheds = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.98) for o in (opt, ref.base_optimizer)]
    d_over = d_base = 0.0
    for xy in data:
        params = {n: q.detach().requires_grad_() for n, q in zip(names, ref.overshoot, strict=True)}
        ref.step(torch.autograd.grad(loss_at(model, xy, params), list(params.values())))
        opt.zero_grad()
        loss_at(model, xy).backward()
        opt.step()
        for s in scheds:
            s.step()
        d_over = max(d_over, max_diff(model.parameters(), ref.overshoot))
        with opt.base_weights():
            d_base = max(d_base, max_diff(model.parameters(), ref.base))
    scale = max_diff(ref.base, init)
    return d_over, d_base, scale


@pytest.mark.parametrize(
    ("delay", "scheduled", "amsgrad"), [(None, False, False), (3, True, False), (0, False, True)]
)
def test_exact_equals_two_model_adam(delay: int | None, scheduled: bool, amsgrad: bool) -> None:
    d_over, d_base, _ = two_model_diffs(
        exact=True, delay=delay, steps=120, scheduled=scheduled, amsgrad=amsgrad
    )
    assert d_over <= 1e-12 and d_base <= 1e-12


def test_default_close_to_two_model_adam() -> None:
    """Default (paper) form vs two-model Adam, same ramp: relative drift within DEFAULT_FORM_TOLERANCE."""
    d_over, d_base, scale = two_model_diffs(exact=False, delay=50, steps=300)
    rel = max(d_over, d_base) / scale
    print(f"default AdamO vs two-model Adam: max abs diff {max(d_over, d_base):.3e}, relative {rel:.3e}")
    assert rel <= DEFAULT_FORM_TOLERANCE
    # ... and it is not exact (otherwise the exact variant would be pointless)
    assert max(d_over, d_base) > 1e-10


def test_foreach_equals_single_tensor() -> None:
    data = batches(80)
    for kw in (
        dict(gamma=5.0, delay=10, weight_decay=1e-2),
        dict(gamma=3.0, delay=0, exact=True, amsgrad=True, maximize=True),
        dict(gamma=2.0, delay=None, weight_decay=0.1, maximize=True),
    ):
        m1, m2 = make_mlp(), make_mlp()
        o1 = AdamO(m1.parameters(), lr=1e-2, foreach=False, **kw)
        o2 = AdamO(m2.parameters(), lr=1e-2, foreach=True, **kw)
        train(m1, o1, data)
        train(m2, o2, data)
        assert max_diff(m1.parameters(), m2.parameters()) <= 1e-13
        with o1.base_weights(), o2.base_weights():
            assert max_diff(m1.parameters(), m2.parameters()) <= 1e-13


@pytest.mark.parametrize("exact", [False, True])
def test_population_tensor_gamma_equals_separate_runs(exact: bool) -> None:
    n, steps = 3, 30
    gammas = [0.0, 2.5, 6.0]
    g = torch.Generator().manual_seed(0)
    init = torch.randn(n, 4, 3, generator=g, dtype=DT)
    grads = [torch.randn(n, 4, 3, generator=g, dtype=DT) for _ in range(steps)]
    kw = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, delay=4, exact=exact, foreach=False)

    def run(p0, grads_i, gamma):
        p, m, v, s = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0), torch.tensor(0.0)
        for k in range(steps):
            adamo([p], [grads_i[k]], [m], [v], [], [s], lr=torch.tensor(1e-2, dtype=DT), gamma=gamma, **kw)
        return p

    stacked = run(init, grads, torch.tensor(gammas, dtype=DT).view(n, 1, 1))
    for i in range(n):
        single = run(init[i], [gk[i] for gk in grads], gammas[i])
        assert (stacked[i] - single).abs().max().item() <= 1e-12


def test_maximize_and_grad_untouched() -> None:
    g = torch.Generator().manual_seed(0)
    p1 = torch.zeros(5, dtype=DT, requires_grad=True)
    p2 = torch.zeros(5, dtype=DT, requires_grad=True)
    o1 = AdamO([p1], lr=0.1, delay=2, maximize=True)
    o2 = AdamO([p2], lr=0.1, delay=2)
    for _ in range(10):
        grad = torch.randn(5, generator=g, dtype=DT)
        p1.grad, p2.grad = grad.clone(), -grad
        o1.step()
        o2.step()
        assert torch.equal(p1.grad, grad)
    assert torch.equal(p1, p2)
