"""Base/overshoot mode, state_dict, torch conventions and argument checks shared by SGDO and AdamO (CPU)."""

from __future__ import annotations

import copy
import functools
import io

import pytest
import torch

from overshoot import SGDO, AdamO
from overshoot.optim._base import SAVED_KEY

DT = torch.float64

OPTIMIZERS = {
    "sgdo": lambda ps, **kw: SGDO(ps, lr=0.05, momentum=0.9, gamma=3.0, **kw),
    "adamo": lambda ps, **kw: AdamO(ps, lr=1e-2, gamma=5.0, delay=2, **kw),
    "adamo-exact": lambda ps, **kw: AdamO(ps, lr=1e-2, gamma=5.0, delay=2, exact=True, amsgrad=True, **kw),
    "adamo-capturable": lambda ps, **kw: AdamO(
        ps, lr=torch.tensor(1e-2, dtype=DT), gamma=5.0, delay=2, capturable=True, **kw
    ),
    "adamo-exact-capturable": lambda ps, **kw: AdamO(
        ps, lr=1e-2, gamma=5.0, delay=2, exact=True, amsgrad=True, capturable=True, foreach=False, **kw
    ),
}


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(DT)


def batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 5, generator=g, dtype=DT), torch.randn(8, 2, generator=g, dtype=DT)) for _ in range(n)
    ]


def loss_at(model, xy) -> torch.Tensor:
    x, y = xy
    return ((model(x) - y) ** 2).mean()


def train(model, opt, data) -> None:
    for xy in data:
        opt.zero_grad()
        loss_at(model, xy).backward()
        opt.step()


def snapshot(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("mode", ["overshoot", "base"])
def test_state_dict_round_trip_continues_bit_identically(name: str, mode: str) -> None:
    data = batches(20)
    m1 = make_mlp()
    o1 = OPTIMIZERS[name](m1.parameters())
    train(m1, o1, data[:8])
    if mode == "base":
        o1.move_to_base()
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": o1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    m2 = make_mlp(seed=123)
    m2.load_state_dict(ckpt["model"])
    o2 = OPTIMIZERS[name](m2.parameters())
    o2.load_state_dict(ckpt["opt"])
    assert o2.mode == mode and o2.state_dict()["overshoot_mode"] == mode
    if mode == "base":
        o1.move_to_overshoot()
        o2.move_to_overshoot()
    assert same(snapshot(m1), snapshot(m2))
    train(m1, o1, data[8:])
    train(m2, o2, data[8:])
    assert same(snapshot(m1), snapshot(m2))
    with o1.base_weights(), o2.base_weights():
        assert same(snapshot(m1), snapshot(m2))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_base_weights_round_trip_5000_times_is_bit_identical(name: str) -> None:
    model = make_mlp()
    opt = OPTIMIZERS[name](model.parameters())
    train(model, opt, batches(6))
    before = snapshot(model)
    with opt.base_weights():
        base = snapshot(model)
    assert not same(before, base)
    for _ in range(5000):
        with opt.base_weights():
            pass
    assert same(before, snapshot(model))
    with opt.base_weights():
        assert same(base, snapshot(model))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_mode_errors(name: str) -> None:
    model = make_mlp()
    opt = OPTIMIZERS[name](model.parameters())
    train(model, opt, batches(3))
    assert opt.mode == "overshoot"
    with pytest.raises(RuntimeError, match="move_to_overshoot"):
        opt.move_to_overshoot()
    opt.move_to_base()
    assert opt.mode == "base"
    with pytest.raises(RuntimeError, match="move_to_base"):
        opt.move_to_base()
    with pytest.raises(RuntimeError, match="base weights"):
        opt.step()
    opt.move_to_overshoot()
    with opt.base_weights(), pytest.raises(RuntimeError, match="base weights"):
        opt.step()
    assert opt.mode == "overshoot"


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_scheduler_between_step_and_evaluation_does_not_move_base(name: str) -> None:
    model = make_mlp()
    opt = OPTIMIZERS[name](model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    train(model, opt, batches(5))
    with opt.base_weights():
        b1 = snapshot(model)
    sched.step()
    with opt.base_weights():
        b2 = snapshot(model)
    assert same(b1, b2)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_grad_scaler_skips_inf_step(name: str) -> None:
    model = make_mlp()
    opt = OPTIMIZERS[name](model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    data = batches(4)
    for xy in data[:3]:
        opt.zero_grad()
        scaler.scale(loss_at(model, xy)).backward()
        scaler.step(opt)
        scaler.update()
    params, state = snapshot(model), copy.deepcopy(opt.state_dict())
    opt.zero_grad()
    scaler.scale(loss_at(model, data[3]) * float("inf")).backward()
    scaler.step(opt)
    scaler.update()
    assert same(params, snapshot(model))
    after = opt.state_dict()
    for k, st in state["state"].items():
        for key, v in st.items():
            assert (
                torch.equal(v, after["state"][k][key]) if torch.is_tensor(v) else v == after["state"][k][key]
            )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_closure_and_grad_untouched(name: str) -> None:
    data = batches(5)
    m1, m2 = make_mlp(), make_mlp()
    o1, o2 = OPTIMIZERS[name](m1.parameters()), OPTIMIZERS[name](m2.parameters())
    for xy in data:

        def closure(xy=xy):
            o1.zero_grad()
            loss = loss_at(m1, xy)
            loss.backward()
            return loss

        loss = o1.step(closure)
        assert torch.is_tensor(loss)
        grads = [p.grad.clone() for p in m1.parameters()]
        assert same(grads, [p.grad for p in m1.parameters()])
        o2.zero_grad()
        loss_at(m2, xy).backward()
        o2.step()
    assert same(snapshot(m1), snapshot(m2))


@pytest.mark.parametrize("cls", [SGDO, AdamO, functools.partial(AdamO, capturable=True)])
def test_gamma_zero_base_weights_is_free(cls) -> None:
    model = make_mlp()
    opt = cls(model.parameters(), gamma=0.0)
    train(model, opt, batches(3))
    before = snapshot(model)
    with opt.base_weights():
        assert opt.mode == "base"
        assert not any(SAVED_KEY in s for s in opt.state.values())
        assert same(before, snapshot(model))


def test_per_group_gamma_and_alias() -> None:
    g = torch.Generator().manual_seed(0)
    a1, b1, a2, b2 = (torch.zeros(4, dtype=DT, requires_grad=True) for _ in range(4))
    opt = SGDO([{"params": [a1], "gamma": 0.0}, {"params": [b1], "overshoot": 4.0}], lr=0.05)
    assert [grp["gamma"] for grp in opt.param_groups] == [0.0, 4.0]
    oa, ob = SGDO([a2], lr=0.05, gamma=0.0), SGDO([b2], lr=0.05, overshoot=4.0)
    for _ in range(10):
        ga, gb = torch.randn(4, generator=g, dtype=DT), torch.randn(4, generator=g, dtype=DT)
        a1.grad, b1.grad, a2.grad, b2.grad = ga, gb, ga.clone(), gb.clone()
        for o in (opt, oa, ob):
            o.step()
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    with opt.base_weights(), oa.base_weights(), ob.base_weights():
        assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert AdamO([a1], overshoot=2.0).param_groups[0]["gamma"] == 2.0
    with pytest.raises(ValueError, match="gamma"):
        SGDO([a1], gamma=1.0, overshoot=2.0)


P = [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SGDO(P, gamma=-1.0), "gamma"),
        (lambda: SGDO(P, overshoot=-0.5), "gamma"),
        (lambda: SGDO(P, lr=-1e-3), "learning rate"),
        (lambda: SGDO(P, momentum=0.0, gamma=1.0), "momentum"),
        (lambda: SGDO(P, momentum=-0.1, gamma=0.0), "momentum"),
        (lambda: SGDO(P, dampening=0.1, gamma=1.0), "dampening"),
        (lambda: SGDO(P, weight_decay=-1.0), "weight_decay"),
        (lambda: SGDO([{"params": P, "gamma": -2.0}]), "gamma"),
        (lambda: AdamO(P, gamma=-1.0), "gamma"),
        (lambda: AdamO(P, lr=-1.0), "learning rate"),
        (lambda: AdamO(P, betas=(1.0, 0.999)), "beta parameter at index 0"),
        (lambda: AdamO(P, betas=(-0.1, 0.999)), "beta parameter at index 0"),
        (lambda: AdamO(P, betas=(0.9, 1.0)), "beta parameter at index 1"),
        (lambda: AdamO(P, betas=(0.0, 0.9), gamma=1.0), "beta parameter at index 0"),
        (lambda: AdamO(P, eps=0.0), "epsilon"),
        (lambda: AdamO(P, eps=-1e-8), "epsilon"),
        (lambda: AdamO(P, weight_decay=-1e-2), "weight_decay"),
        (lambda: AdamO(P, delay=-1), "delay"),
    ],
)
def test_invalid_arguments_rejected(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("cls", [SGDO, AdamO])
def test_fused_true_without_cuda_raises(cls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="fused=True"):
        cls([torch.zeros(3, requires_grad=True)], fused=True)
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        cls([torch.zeros(3, requires_grad=True)], fused=True, foreach=True)
