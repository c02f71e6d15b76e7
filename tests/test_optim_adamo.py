"""AdamO against torch AdamW, the two-model definition, its foreach, capturable and population paths (CPU,
float64)."""

from __future__ import annotations

import io

import pytest
import torch
from torch.func import functional_call

from overshoot import AdamO
from overshoot.optim.adamo import DEFAULT_FORM_TOLERANCE, adamo, adamo_base_offset, ramp
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


# ------------------------------------------------------------------------------------- capturable=True
CAPTURABLE_CASES = {
    "default": dict(gamma=5.0, delay=3),
    "exact": dict(gamma=5.0, delay=3, exact=True),
    "no-ramp-wd": dict(gamma=2.0, delay=None, weight_decay=0.1),
    "amsgrad-maximize": dict(gamma=3.0, delay=0, amsgrad=True, maximize=True),
    "exact-amsgrad-wd": dict(gamma=4.0, delay=5, exact=True, amsgrad=True, weight_decay=0.05),
    "gamma0": dict(gamma=0.0, weight_decay=0.05),
}


def run_pair(kw: dict, steps: int, foreach: bool | None, sched: bool = True) -> float:
    """Max |capturable - host| over the run, for the overshoot and (each step) the base weights; the
    capturable run takes a float64 lr tensor that an ExponentialLR scheduler rewrites every step."""
    data = batches(steps, seed=3)
    m1, m2 = make_mlp(), make_mlp()
    o1 = AdamO(m1.parameters(), lr=1e-2, foreach=foreach, **kw)
    o2 = AdamO(m2.parameters(), lr=torch.tensor(1e-2, dtype=DT), capturable=True, foreach=foreach, **kw)
    scheds = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.97) for o in (o1, o2)] if sched else []
    worst = 0.0
    for xy in data:
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            loss_at(m, xy).backward()
            o.step()
        for s in scheds:
            s.step()
        worst = max(worst, max_diff(m1.parameters(), m2.parameters()))
        with o1.base_weights(), o2.base_weights():
            worst = max(worst, max_diff(m1.parameters(), m2.parameters()))
    assert isinstance(o2.param_groups[0]["lr"], torch.Tensor)
    return worst


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("case", list(CAPTURABLE_CASES))
def test_capturable_equals_host_path(case: str, foreach: bool) -> None:
    assert run_pair(CAPTURABLE_CASES[case], steps=60, foreach=foreach) <= 1e-12


def test_capturable_keeps_its_state_on_the_device() -> None:
    model = make_mlp()
    opt = AdamO(model.parameters(), lr=torch.tensor(1e-2, dtype=DT), capturable=True, delay=1)
    train(model, opt, batches(4))
    for st in opt.state.values():
        assert st["step"].dtype == torch.float32 and float(st["step"]) == 4.0
        assert isinstance(st["last_lr"], torch.Tensor) and isinstance(st["last_gamma"], torch.Tensor)
        assert float(st["last_gamma"]) == 3.0 and st["last_gamma_max"] == 5.0


def _resume(kw: dict, first: dict, second: dict, via_bytes: bool) -> float:
    """Train 15 steps with AdamO(**first), load its state into AdamO(**second), train 15 more; max
    difference from an uninterrupted host run, over the overshoot and the base weights."""
    data = batches(30, seed=4)
    ref_model, model = make_mlp(), make_mlp()
    ref = AdamO(ref_model.parameters(), lr=1e-2, **kw)
    opt = AdamO(model.parameters(), **first, **kw)
    train(ref_model, ref, data)
    train(model, opt, data[:15])
    sd = opt.state_dict()
    if via_bytes:
        buf = io.BytesIO()
        torch.save(sd, buf)
        buf.seek(0)
        sd = torch.load(buf, weights_only=True)
    opt2 = AdamO(model.parameters(), **second, **kw)
    opt2.load_state_dict(sd)
    capturable = second.get("capturable", False)
    for st in opt2.state.values():
        assert isinstance(st["last_lr"], torch.Tensor) is capturable
        assert ("last_gamma_max" in st) is capturable
    assert opt2.param_groups[0]["capturable"] is capturable
    assert isinstance(opt2.param_groups[0]["lr"], torch.Tensor) is isinstance(second["lr"], torch.Tensor)
    train(model, opt2, data[15:])
    worst = max_diff(model.parameters(), ref_model.parameters())
    with opt2.base_weights(), ref.base_weights():
        worst = max(worst, max_diff(model.parameters(), ref_model.parameters()))
    return worst


HOST = dict(lr=1e-2)
DEVICE = dict(lr=1e-2, capturable=True)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize(
    ("first", "second", "via_bytes"),
    [
        (DEVICE, HOST, True),
        (HOST, DEVICE, True),
        (DEVICE, DEVICE, False),
        (HOST, dict(lr=torch.tensor(0.5, dtype=DT), capturable=True), False),  # the loaded lr goes in place
    ],
    ids=["device-to-host", "host-to-device", "device-to-device", "host-to-tensor-lr"],
)
def test_capturable_state_dict_round_trips(exact: bool, first: dict, second: dict, via_bytes: bool) -> None:
    lr_obj = second["lr"]
    assert _resume(dict(gamma=5.0, delay=4, exact=exact, amsgrad=exact), first, second, via_bytes) <= 1e-12
    if isinstance(lr_obj, torch.Tensor):
        assert float(lr_obj) == 1e-2  # the loaded value, in the optimizer's own tensor


def test_capturable_step_and_base_weights_never_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Python number is read from a tensor during a capturable step or base-weight round trip; the same
    guard trips on the host path (which reads its step counts), so it does detect host reads."""
    data = batches(6)
    models = [make_mlp(), make_mlp(), make_mlp()]
    opts = [
        AdamO(models[0].parameters(), lr=torch.tensor(1e-2, dtype=DT), capturable=True, delay=1),
        AdamO(models[1].parameters(), lr=1e-2, capturable=True, exact=True, amsgrad=True, foreach=False),
        AdamO(models[2].parameters(), lr=1e-2),
    ]
    for m, o in zip(models, opts, strict=True):
        train(m, o, data[:2])  # state exists: what remains is the per-step work

    def host_read(*args, **kwargs):
        raise AssertionError("host read of a tensor value")

    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    for m, o in zip(models[:2], opts[:2], strict=True):
        train(m, o, data[2:])
        with o.base_weights():
            pass
    with pytest.raises(AssertionError, match="host read"):
        train(models[2], opts[2], data[2:3])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_capturable_gamma0_equals_adamw(amsgrad: bool) -> None:
    """Torch refuses capturable=True on the CPU: AdamO(capturable=True) is compared with AdamW's host path."""
    data = batches(100)
    m1, m2 = make_mlp(), make_mlp()
    kw = dict(lr=1e-2, weight_decay=0.05, amsgrad=amsgrad)
    train(m1, AdamO(m1.parameters(), gamma=0.0, capturable=True, **kw), data)
    train(m2, torch.optim.AdamW(m2.parameters(), **kw), data)
    assert max_diff(m1.parameters(), m2.parameters()) <= 1e-12
    with pytest.raises(AssertionError, match="capturable=True"):
        opt = torch.optim.AdamW(m2.parameters(), capturable=True, **kw)
        train(m2, opt, data[:1])


@pytest.mark.parametrize("exact", [False, True])
def test_population_call_equals_separate_runs(exact: bool) -> None:
    """The population's use: N members stacked on dim 0, per-member gamma [N, 1, ...], one shared step count
    advanced by the caller, a 0-dim float64 lr changed every step; equal to N single-member AdamO runs,
    overshoot and base weights (adamo_base_offset) alike."""
    n, steps, delay = 3, 25, 4
    gammas = [0.0, 2.5, 6.0]
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (3,)]
    init = [torch.randn(n, *s, generator=g, dtype=DT) for s in shapes]
    grads = [[torch.randn(n, *s, generator=g, dtype=DT) for s in shapes] for _ in range(steps)]
    lrs = [1e-2 * 0.95**k for k in range(steps)]
    b1, b2, eps, wd = 0.9, 0.999, 1e-8, 0.01
    gamma64 = torch.tensor(gammas, dtype=DT)
    by_dim = {len(s) + 1: gamma64.view(n, *[1] * len(s)) for s in shapes}

    ps = [p.clone() for p in init]
    ms, vs = [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps]
    t, lr_t, prev_lr_t = (torch.zeros((), dtype=DT) for _ in range(3))
    stacked_base = []
    for k in range(steps):
        lr_t.fill_(lrs[k])
        t.add_(1)
        gam = [by_dim[p.dim()] for p in ps]
        adamo(
            ps, [gr.clone() for gr in grads[k]], ms, vs, [], [t] * len(ps), lr=lr_t, prev_lr=prev_lr_t,
            gamma=gam, beta1=b1, beta2=b2, eps=eps, weight_decay=wd, delay=delay, exact=exact,
            capturable=True, increment_steps=False, foreach=False, fused=False,
        )  # fmt: skip
        prev_lr_t.copy_(lr_t)
        offset_gamma = [ramp(gm, t, delay) for gm in gam]
        base = adamo_base_offset(
            ps, ms, vs, [t] * len(ps), lr=prev_lr_t, gamma=offset_gamma, beta1=b1, beta2=b2, eps=eps
        )
        stacked_base.append(base)
    for i in range(n):
        params = [p[i].clone().requires_grad_() for p in init]
        opt = AdamO(params, lr=lrs[0], betas=(b1, b2), eps=eps, weight_decay=wd, gamma=gammas[i], delay=delay,
                    exact=exact)  # fmt: skip
        for k in range(steps):
            opt.param_groups[0]["lr"] = lrs[k]
            for p, gr in zip(params, grads[k], strict=True):
                p.grad = gr[i].clone()
            opt.step()
            with opt.base_weights():
                assert max_diff(params, [b[i] for b in stacked_base[k]]) <= 1e-12
        assert max_diff(params, [p[i] for p in ps]) <= 1e-12


def test_capturable_argument_errors() -> None:
    p = torch.zeros(3, dtype=DT, requires_grad=True)
    with pytest.raises(RuntimeError, match="not capturable"):
        AdamO([p], capturable=True, fused=True)
    with pytest.raises(ValueError, match="tensor lr only with capturable=True"):
        AdamO([p], lr=torch.tensor(1e-3))
    with pytest.raises(ValueError, match="0-dim"):
        AdamO([p], lr=torch.tensor([1e-3]), capturable=True)
    with pytest.raises(RuntimeError, match=r"capturable=True.*\(got meta\)"):
        AdamO([torch.zeros(3, device="meta", requires_grad=True)], capturable=True)
    m, v, s = torch.zeros(3, dtype=DT), torch.zeros(3, dtype=DT), torch.zeros(())
    kw = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, gamma=1.0, lr=1e-3)
    q = torch.zeros(3, dtype=DT)
    with pytest.raises(ValueError, match="same tensor for several parameters"):
        adamo([q, q.clone()], [q, q], [m, m.clone()], [v, v.clone()], [], [s, s], capturable=True, **kw)
    with pytest.raises(ValueError, match="need capturable=True"):
        adamo([q], [q], [m], [v], [], [s], **{**kw, "gamma": [torch.tensor(1.0)]})
    with pytest.raises(RuntimeError, match="fused=True"):
        adamo([q], [q], [m], [v], [], [s], capturable=True, fused=True, **kw)
    with pytest.raises(ValueError, match="foreach=False"):
        adamo([q], [q], [m], [v], [], [s], capturable=True, foreach=True, **{**kw, "gamma": torch.ones(3)})
    with pytest.raises(RuntimeError, match="on the parameters' device"):
        adamo([q], [q], [m], [v], [], [s], capturable=True, **{**kw, "lr": torch.tensor(1e-3, device="meta")})
    with pytest.raises(RuntimeError, match="supported devices"):
        adamo([q], [q], [m], [v], [], [torch.zeros((), device="meta")], capturable=True, **kw)


def test_host_per_parameter_values_equal_separate_calls() -> None:
    """The host path takes the previous lr and factor per parameter (as AdamO.step passes them) and
    adamo_base_offset takes Python floats with host step counts: equal to one call per parameter and to the
    tensor path."""
    g = torch.Generator().manual_seed(0)
    prev_lr, prev_gamma = [1e-2, 2e-2, 3e-2], [0.0, 1.0, 2.5]
    init = [torch.randn(4, 3, generator=g, dtype=DT) for _ in range(3)]
    grads = [torch.randn(4, 3, generator=g, dtype=DT) for _ in range(3)]
    moments = [
        (torch.randn(4, 3, generator=g, dtype=DT), torch.rand(4, 3, generator=g, dtype=DT)) for _ in range(3)
    ]
    kw = dict(lr=1e-2, gamma=5.0, delay=2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    runs = []
    for per_call in (False, True):
        ps, ms, vs = (
            [p.clone() for p in init],
            [m.clone() for m, _ in moments],
            [v.clone() for _, v in moments],
        )
        steps = [torch.tensor(5.0) for _ in ps]
        if per_call:
            for i in range(3):
                adamo([ps[i]], [grads[i]], [ms[i]], [vs[i]], [], [steps[i]], prev_lr=prev_lr[i],
                      prev_gamma=prev_gamma[i], foreach=False, **kw)  # fmt: skip
        else:
            adamo(ps, grads, ms, vs, [], steps, prev_lr=prev_lr, prev_gamma=prev_gamma, foreach=True, **kw)
        gam = [float(ramp(5.0, 6.0, 2))] * 3
        base = adamo_base_offset(ps, ms, vs, steps, lr=prev_lr, gamma=gam, beta1=0.9, beta2=0.999, eps=1e-8)
        runs.append(ps + base)
    assert max_diff(*runs) <= 1e-15
    lr_t, gam_t = ([torch.tensor(x, dtype=DT) for x in xs] for xs in (prev_lr, gam))
    on_device = adamo_base_offset(ps, ms, vs, steps, lr=lr_t, gamma=gam_t, beta1=0.9, beta2=0.999, eps=1e-8)
    assert max_diff(on_device, runs[1][3:]) <= 1e-15


@pytest.mark.parametrize("capturable", [False, True])
def test_base_weights_with_a_group_without_offset(capturable: bool) -> None:
    """A param group with gamma 0 beside one with overshoot: the base weights move only the first group."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(6, 3).to(DT), torch.nn.Linear(6, 3).to(DT)
    groups = [{"params": a.parameters()}, {"params": b.parameters(), "gamma": 0.0}]
    opt = AdamO(groups, lr=1e-2, delay=0, capturable=capturable)
    for x, y in batches(5):
        opt.zero_grad()
        (((a(x) - y) ** 2).mean() + ((b(x) - y) ** 2).mean()).backward()
        opt.step()
    over_a, over_b = ([p.detach().clone() for p in m.parameters()] for m in (a, b))
    with opt.base_weights():
        assert max_diff(b.parameters(), over_b) == 0.0 and max_diff(a.parameters(), over_a) > 0.0
