"""SGDO against torch SGD, the two-model definition, and its own foreach / population paths (CPU, float64)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from overshoot import SGDO
from overshoot.optim.reference import TwoModelSGD
from overshoot.optim.sgdo import sgdo

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


def loss_at(model: torch.nn.Module, xy: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = xy
    return ((model(x) - y) ** 2).mean()


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, data: list, sched=None) -> None:
    for xy in data:
        opt.zero_grad()
        loss_at(model, xy).backward()
        opt.step()
        if sched is not None:
            sched.step()


def max_diff(a, b) -> float:
    return max((x.detach() - y.detach()).abs().max().item() for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("foreach", [False, True])
def test_gamma0_is_sgd_momentum_and_gamma_mu_is_nesterov(foreach: bool) -> None:
    data = batches(200)
    for gamma, nesterov in ((0.0, False), (0.9, True)):
        m1, m2 = make_mlp(), make_mlp()
        train(m1, SGDO(m1.parameters(), lr=0.05, momentum=0.9, gamma=gamma, foreach=foreach), data)
        ref = torch.optim.SGD(m2.parameters(), lr=0.05, momentum=0.9, nesterov=nesterov, foreach=foreach)
        train(m2, ref, data)
        # gamma = 0 runs torch's own arithmetic (bit-identical); nesterov differs by rounding only
        assert max_diff(m1.parameters(), m2.parameters()) <= (0.0 if gamma == 0 else 1e-12)


def two_model_run(mu: float, gamma: float, lr: float, scheduled: bool, steps: int = 40):
    """(max |SGDO - two-model overshoot|, max |SGDO base_weights - two-model base|) over the run."""
    data = batches(steps, seed=3)
    model = make_mlp()
    ref = TwoModelSGD([p.detach() for p in model.parameters()], lr=lr, momentum=mu, gamma=gamma)
    opt = SGDO(model.parameters(), lr=lr, momentum=mu, gamma=gamma)
    sched = sched_ref = None
    if scheduled:
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
        sched_ref = torch.optim.lr_scheduler.ExponentialLR(ref.base_optimizer, gamma=0.97)
    d_over = d_base = 0.0
    for xy in data:
        # two-model: gradient at its overshoot copy
        ref_model = make_mlp()
        with torch.no_grad():
            for p, q in zip(ref_model.parameters(), ref.overshoot, strict=True):
                p.copy_(q)
        grads = torch.autograd.grad(loss_at(ref_model, xy), list(ref_model.parameters()))
        ref.step(grads)
        opt.zero_grad()
        loss_at(model, xy).backward()
        opt.step()
        if scheduled:
            sched.step()
            sched_ref.step()
        d_over = max(d_over, max_diff(model.parameters(), ref.overshoot))
        with opt.base_weights():
            d_base = max(d_base, max_diff(model.parameters(), ref.base))
    return d_over, d_base


@settings(max_examples=10, deadline=None)
@given(
    mu=st.floats(0.05, 0.99),
    gamma=st.floats(0.0, 10.0),
    lr=st.floats(1e-4, 0.1),
    scheduled=st.booleans(),
)
def test_equals_two_model_sgd(mu: float, gamma: float, lr: float, scheduled: bool) -> None:
    d_over, d_base = two_model_run(mu, gamma, lr, scheduled)
    assert d_over <= 1e-11 and d_base <= 1e-11


def test_foreach_equals_single_tensor() -> None:
    data = batches(30)
    for kw in (
        dict(gamma=3.0, weight_decay=1e-2),
        dict(gamma=0.0, dampening=0.3, maximize=True),
        dict(gamma=7.0, momentum=0.5, maximize=True, weight_decay=1e-3),
    ):
        m1, m2 = make_mlp(), make_mlp()
        o1, o2 = (
            SGDO(m1.parameters(), lr=0.02, foreach=False, **kw),
            SGDO(m2.parameters(), lr=0.02, foreach=True, **kw),
        )
        train(m1, o1, data)
        train(m2, o2, data)
        assert max_diff(m1.parameters(), m2.parameters()) <= 1e-13
        with o1.base_weights(), o2.base_weights():
            assert max_diff(m1.parameters(), m2.parameters()) <= 1e-13


def test_maximize_is_minimize_of_negated_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    p1 = torch.zeros(5, dtype=DT, requires_grad=True)
    p2 = torch.zeros(5, dtype=DT, requires_grad=True)
    o1 = SGDO([p1], lr=0.1, gamma=2.0, maximize=True)
    o2 = SGDO([p2], lr=0.1, gamma=2.0)
    for _ in range(10):
        grad = torch.randn(5, generator=g, dtype=DT)
        p1.grad, p2.grad = grad.clone(), -grad
        o1.step()
        o2.step()
    assert torch.equal(p1, p2)


@pytest.mark.parametrize("tensor_lr", [False, True])
def test_population_tensor_gamma_equals_separate_runs(tensor_lr: bool) -> None:
    n, steps = 4, 25
    gammas = [0.0, 0.9, 3.0, 7.5]
    g = torch.Generator().manual_seed(0)
    init = torch.randn(n, 3, 5, generator=g, dtype=DT)
    grads = [torch.randn(n, 3, 5, generator=g, dtype=DT) for _ in range(steps)]
    lrs = [0.05 * 0.98**k for k in range(steps)]
    stacked, stacked_buf = init.clone(), [None]
    gamma_t = torch.tensor(gammas, dtype=DT).view(n, 1, 1)
    prev = 0.0
    for k in range(steps):
        lr = torch.tensor(lrs[k], dtype=DT) if tensor_lr else lrs[k]
        sgdo(
            [stacked],
            [grads[k]],
            stacked_buf,
            lr=lr,
            prev_lr=prev,
            momentum=0.9,
            gamma=gamma_t,
            foreach=False,
        )
        prev = lr
    for i in range(n):
        single, buf = init[i].clone(), [None]
        prev_f = 0.0
        for k in range(steps):
            sgdo([single], [grads[k][i]], buf, lr=lrs[k], prev_lr=prev_f, momentum=0.9, gamma=gammas[i])
            prev_f = lrs[k]
        assert (stacked[i] - single).abs().max().item() <= 1e-12
        assert (stacked_buf[0][i] - buf[0]).abs().max().item() <= 1e-12


def test_tensor_gamma_rejected_by_foreach() -> None:
    p = torch.zeros(2, 3, dtype=DT)
    with pytest.raises(ValueError, match="single-tensor"):
        sgdo([p], [p.clone()], [None], lr=0.1, momentum=0.9, gamma=torch.ones(2, 1, dtype=DT), foreach=True)


def test_step_leaves_grad_untouched() -> None:
    for foreach in (False, True):
        model = make_mlp()
        opt = SGDO(model.parameters(), lr=0.1, gamma=4.0, weight_decay=0.1, maximize=True, foreach=foreach)
        for xy in batches(3):
            opt.zero_grad()
            loss_at(model, xy).backward()
            before = [p.grad.clone() for p in model.parameters()]
            opt.step()
            assert all(torch.equal(b, p.grad) for b, p in zip(before, model.parameters(), strict=True))


def test_gamma_changed_between_steps_matches_two_model() -> None:
    g = torch.Generator().manual_seed(4)
    p = torch.randn(6, generator=g, dtype=DT).requires_grad_()
    ref = TwoModelSGD([p.detach()], lr=0.05, momentum=0.8, gamma=2.0)
    opt = SGDO([p], lr=0.05, momentum=0.8, gamma=2.0)
    for k in range(20):
        if k == 10:
            opt.param_groups[0]["gamma"] = ref.gamma = 5.0
        grad = torch.randn(6, generator=g, dtype=DT) + ref.overshoot[0]  # depends on where it is taken
        p.grad = grad.clone()
        ref.step([grad])
        opt.step()
        assert (p - ref.overshoot[0]).abs().max().item() <= 1e-13
        with opt.base_weights():
            assert (p - ref.base[0]).abs().max().item() <= 1e-13
