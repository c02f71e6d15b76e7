"""Overshoot(any optimizer) against the two-model definition, SGDO/AdamO and the bare optimizers; the
Schedule-Free evaluation wrapper (CPU, float64)."""

from __future__ import annotations

import io

import pytest
import torch
from torch.func import functional_call

from overshoot.optim import SGDO, AdamO, Overshoot, ScheduleFreeEval
from overshoot.optim.reference import TwoModel, TwoModelAdam, TwoModelSGD

DT = torch.float64
STEPS = 200


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


def cosine(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS)


def train(model, opt, data, sched=None) -> None:
    for xy in data:
        opt.zero_grad()
        loss_at(model, xy).backward()
        opt.step()
        if sched is not None:
            sched.step()


def train_two_model(model: torch.nn.Module, ref: TwoModel, data, sched) -> None:
    names = [n for n, _ in model.named_parameters()]
    for xy in data:
        at = {n: o.detach().requires_grad_() for n, o in zip(names, ref.overshoot, strict=True)}
        grads = torch.autograd.grad(loss_at(model, xy, at), list(at.values()))
        ref.step(grads)
        sched.step()


def base_of(model: torch.nn.Module, opt) -> list[torch.Tensor]:
    with torch.no_grad(), opt.base_weights():
        return [p.detach().clone() for p in model.parameters()]


def rel_diff(a, b) -> float:
    """Largest elementwise difference over the largest magnitude."""
    a, b = list(a), list(b)
    scale = max(x.abs().max().item() for x in b)
    return max((x.detach() - y.detach()).abs().max().item() for x, y in zip(a, b, strict=True)) / scale


def same(a, b) -> bool:
    return all(torch.equal(x.detach(), y.detach()) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------ the definition
CASES = {
    # name: (wrapped optimizer over params, its two-model reference over params, wrapper kwargs)
    "sgd-momentum-wd": (
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01),
        lambda ps: TwoModelSGD(ps, lr=0.05, momentum=0.9, gamma=5.0, weight_decay=0.01),
        dict(gamma=5.0),
    ),
    "adamw-decoupled-wd-delay": (
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05),
        lambda ps: TwoModelAdam(ps, lr=1e-2, weight_decay=0.05, gamma=5.0, delay=10),
        dict(gamma=5.0, delay=10),
    ),
    "adamw-no-ramp": (
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05),
        lambda ps: TwoModelAdam(ps, lr=1e-2, weight_decay=0.05, gamma=3.0, delay=None),
        dict(gamma=3.0),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_two_model_with_cosine_schedule(case: str) -> None:
    make, make_ref, kw = CASES[case]
    data = batches(STEPS)
    m1, m2 = make_mlp(), make_mlp()
    opt = Overshoot(make(list(m1.parameters())), **kw)
    train(m1, opt, data, cosine(opt))
    ref = make_ref(list(m2.parameters()))
    assert isinstance(ref, TwoModel)
    train_two_model(m2, ref, data, cosine(ref.base_optimizer))
    assert rel_diff(m1.parameters(), ref.overshoot) < 1e-12
    assert rel_diff(base_of(m1, opt), ref.base) < 1e-12
    assert rel_diff(ref.base, [p.detach() for p in make_mlp().parameters()]) > 1e-2  # it did train


def test_equals_sgdo_and_exact_adamo() -> None:
    data = batches(STEPS)
    for wrapped, own in (
        (
            lambda ps: Overshoot(torch.optim.SGD(ps, lr=0.05, momentum=0.9), gamma=5.0),
            lambda ps: SGDO(ps, lr=0.05, momentum=0.9, gamma=5.0),
        ),
        (
            lambda ps: Overshoot(torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.0), gamma=5.0, delay=50),
            lambda ps: AdamO(ps, lr=1e-2, weight_decay=0.0, gamma=5.0, delay=50, exact=True),
        ),
    ):
        m1, m2 = make_mlp(), make_mlp()
        o1, o2 = wrapped(m1.parameters()), own(m2.parameters())
        train(m1, o1, data, cosine(o1))
        train(m2, o2, data, cosine(o2))
        assert rel_diff(m1.parameters(), m2.parameters()) < 1e-12
        assert rel_diff(base_of(m1, o1), base_of(m2, o2)) < 1e-12


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05),
        lambda ps: torch.optim.RAdam(ps, lr=1e-2, decoupled_weight_decay=True, weight_decay=0.05),
    ],
    ids=["sgd", "adamw", "radam"],
)
def test_gamma0_is_the_bare_optimizer_bit_for_bit(make) -> None:
    data = batches(STEPS)
    m1, m2 = make_mlp(), make_mlp()
    opt = Overshoot(make(m1.parameters()), gamma=0.0)
    train(m1, opt, data, cosine(opt))
    bare = make(m2.parameters())
    train(m2, bare, data, cosine(bare))
    assert same(m1.parameters(), m2.parameters())
    assert same(base_of(m1, opt), m2.parameters())


def test_scheduler_on_the_wrapped_optimizer_is_the_same() -> None:
    data = batches(50)
    m1, m2 = make_mlp(), make_mlp()
    o1 = Overshoot(torch.optim.AdamW(m1.parameters(), lr=1e-2), gamma=5.0)
    inner = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    s2 = cosine(inner)  # built before wrapping
    o2 = Overshoot(inner, gamma=5.0)
    train(m1, o1, data, cosine(o1))
    train(m2, o2, data, s2)
    assert same(m1.parameters(), m2.parameters())
    assert o1.param_groups is o1.optimizer.param_groups


# ------------------------------------------------------------------ the API
def test_base_weights_round_trip_is_bit_identical_and_modes_checked() -> None:
    model = make_mlp()
    opt = Overshoot(torch.optim.AdamW(model.parameters(), lr=1e-2), gamma=5.0)
    train(model, opt, batches(20))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(100):
        with opt.base_weights():
            assert opt.mode == "base"
            assert not same(model.parameters(), before)
    assert opt.mode == "overshoot"
    assert same(model.parameters(), before)
    opt.move_to_base()
    with pytest.raises(RuntimeError, match="twice"):
        opt.move_to_base()
    with pytest.raises(RuntimeError, match="base weights"):
        opt.step()
    opt.move_to_overshoot()
    with pytest.raises(RuntimeError, match="twice"):
        opt.move_to_overshoot()


@pytest.mark.parametrize("mode", ["overshoot", "base"])
def test_state_dict_round_trip_continues_bit_identically(mode: str) -> None:
    data = batches(60)
    m1, m2 = make_mlp(), make_mlp(seed=5)
    o1 = Overshoot(torch.optim.AdamW(m1.parameters(), lr=1e-2), gamma=4.0, delay=10)
    s1 = cosine(o1)
    train(m1, o1, data[:30], s1)
    if mode == "base":
        o1.move_to_base()
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": o1.state_dict(), "sched": s1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    o2 = Overshoot(torch.optim.AdamW(m2.parameters(), lr=1e-2), gamma=4.0, delay=10)
    s2 = cosine(o2)
    m2.load_state_dict(ckpt["model"])
    o2.load_state_dict(ckpt["opt"])
    s2.load_state_dict(ckpt["sched"])
    assert o2.mode == mode and o2.steps == 30
    if mode == "base":
        o1.move_to_overshoot()
        o2.move_to_overshoot()
    assert same(m1.parameters(), m2.parameters())
    train(m1, o1, data[30:], s1)
    train(m2, o2, data[30:], s2)
    assert same(m1.parameters(), m2.parameters())
    assert same(base_of(m1, o1), base_of(m2, o2))
    with pytest.raises(ValueError, match="not a state_dict of Overshoot"):
        o2.load_state_dict(o2.optimizer.state_dict())


def test_per_group_gamma_alias_and_ramp() -> None:
    model = make_mlp()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    inner = torch.optim.SGD([{"params": first}, {"params": second, "gamma": 0.0}], lr=0.05, momentum=0.9)
    opt = Overshoot(inner, gamma=3.0)
    assert [g["gamma"] for g in opt.param_groups] == [3.0, 0.0]
    train(model, opt, batches(5))
    base = base_of(model, opt)
    params = list(model.parameters())
    assert not torch.equal(params[0], base[0])  # gamma 3: overshoot weights apart from the base
    assert torch.equal(params[2], base[2])  # gamma 0: they coincide
    m2 = make_mlp()
    opt2 = Overshoot(torch.optim.SGD(m2[0].parameters(), lr=0.05, momentum=0.9), overshoot=2.0, delay=3)
    opt2.add_param_group({"params": list(m2[2].parameters()), "overshoot": 7.0})
    assert [g["gamma"] for g in opt2.param_groups] == [2.0, 7.0]
    assert len(opt2.optimizer.param_groups) == 2
    # delay 3: no overshoot for the first 3 steps (the ramp of AdamO)
    train(m2, opt2, batches(3))
    assert same(m2.parameters(), base_of(m2, opt2))
    train(m2, opt2, batches(1))
    assert not same(m2.parameters(), base_of(m2, opt2))


def test_invalid_arguments_rejected() -> None:
    ps = list(make_mlp().parameters())
    with pytest.raises(ValueError, match="gamma"):
        Overshoot(torch.optim.SGD(ps, lr=0.1), gamma=-1.0)
    with pytest.raises(ValueError, match="delay"):
        Overshoot(torch.optim.SGD(ps, lr=0.1), delay=-2)
    with pytest.raises(ValueError, match="disagree"):
        Overshoot(torch.optim.SGD(ps, lr=0.1), gamma=3.0, overshoot=5.0)
    with pytest.raises(ValueError, match="already moves its weights"):
        Overshoot(SGDO(ps, lr=0.1, momentum=0.9))
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        Overshoot(object())  # type: ignore[arg-type]


def test_closure_is_evaluated_at_the_overshoot_weights() -> None:
    model = make_mlp()
    opt = Overshoot(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), gamma=5.0)
    data = batches(4)
    train(model, opt, data[:3])
    seen = []

    def closure() -> float:
        opt.zero_grad()
        seen.append([p.detach().clone() for p in model.parameters()])
        loss = loss_at(model, data[3])
        loss.backward()
        return float(loss.detach())

    before = [p.detach().clone() for p in model.parameters()]
    opt.step(closure)
    assert len(seen) == 1 and same(seen[0], before)


# ------------------------------------------------------------------ Schedule-Free
def test_schedule_free_eval_is_x_and_restores_y_bit_identically() -> None:
    schedulefree = pytest.importorskip("schedulefree")
    data = batches(40)
    m1, m2, m3 = make_mlp(), make_mlp(), make_mlp()
    kw = dict(lr=1e-2, weight_decay=0.01, foreach=False)
    opt = ScheduleFreeEval(schedulefree.AdamWScheduleFree(m1.parameters(), **kw))
    bare = schedulefree.AdamWScheduleFree(m2.parameters(), **kw)
    bare.train()
    for xy in data:  # the wrapper evaluates every step; the bare optimizer never does
        train(m1, opt, [xy])
        with opt.base_weights():
            x = [p.detach().clone() for p in m1.parameters()]
        train(m2, bare, [xy])
    assert same(m1.parameters(), m2.parameters())  # evaluating left no trace on the trajectory
    bare.eval()
    assert rel_diff(x, m2.parameters()) < 1e-14  # base weights = the package's eval() point, x
    assert not same(x, [p.detach() for p in m1.parameters()])
    with pytest.raises(TypeError, match="Schedule-Free"):
        ScheduleFreeEval(torch.optim.SGD(m3.parameters(), lr=0.1))
