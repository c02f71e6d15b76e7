"""CUDA-graph replay of the training step: when it applies, and (on a GPU) that it changes no number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from overshoot.analysis import results
from overshoot.config.compose import ConfigError, compose, resolve
from overshoot.store.writer import run_path
from overshoot.train.lifecycle import run_one, run_population
from overshoot.train.runtime import graph_blocker, use_graph

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs)")


def _run(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "task=fmnist",
        "task.width=tuned",
        "max_steps=40",
        "batch_size=8",
        "progress=none",
        f"data.root={root}",
        f"out={out}",
        *extra,
    ]


def test_graph_applies_only_to_constant_coefficient_runs(root: Path, tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    cuda = torch.device("cuda")
    ok = resolve(compose(_run(root, tmp_path, "+method=sgd_os_g3")))
    assert graph_blocker(ok, cuda, model) is None
    assert "device=cuda" in str(graph_blocker(ok, torch.device("cpu"), model))
    adam = resolve(compose(_run(root, tmp_path, "optimizer=custom", "optimizer.target=torch.optim.Adamax",
                                "optimizer.family=adam")))  # fmt: skip
    assert "not known to keep its step state on the device" in str(graph_blocker(adam, cuda, model))
    for torch_adam in ("adam", "nadam", "adam_os"):  # capturable: step counts on the device
        assert (
            graph_blocker(resolve(compose(_run(root, tmp_path, f"optimizer={torch_adam}"))), cuda, model)
            is None
        )
    cosine = resolve(compose(_run(root, tmp_path, "optimizer=sgd", "schedule=cosine")))
    assert "schedule=cosine" in str(graph_blocker(cosine, cuda, model))
    dropout = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert "dropout" in str(graph_blocker(ok, cuda, dropout))
    assert use_graph(ok, cuda, model) and not use_graph(ok.replace(cuda_graph=False), cuda, model)
    assert not use_graph(adam, cuda, model)  # auto: eager where a graph cannot be used
    with pytest.raises(ValueError, match=r"cuda_graph=true is impossible .*on the device.*cuda_graph=auto"):
        use_graph(adam.replace(cuda_graph=True), cuda, model)
    with pytest.raises(ConfigError, match="cuda_graph=sometimes is unknown"):
        resolve(compose(_run(root, tmp_path, "cuda_graph=sometimes")))


def test_cpu_runs_record_that_they_ran_eagerly(root: Path, tmp_path: Path) -> None:
    args = _run(root, tmp_path, "device=cpu", "optimizer=sgd", "max_steps=5")
    assert run_one(compose(args)) == 0
    assert results.read_run(run_path(tmp_path, resolve(compose(args)))).info["cuda_graph"] is False


def test_impossible_graph_is_a_one_line_error(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_one(compose(_run(root, tmp_path, "device=cpu", "optimizer=sgd", "cuda_graph=true"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda_graph=true is impossible" in err[0] and "device=cuda" in err[0]


def _curves(out: Path, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    run = results.read_run(run_path(out, cfg))
    s = run.steps()
    return s[["base_loss", "train_loss", "grad_norm"]].to_numpy(), run.epochs()["loss"].to_numpy()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize(
    ("method", "precision", "tol"),
    [
        ("+method=sgd_os_g3", "bf16", 0.0),  # the same kernels: bit-identical (measured on an H100)
        ("+method=sgd_os_g3", "fp32", 1e-4),  # cuDNN may pick other (TF32) algorithms while capturing
        ("optimizer=nadam", "fp32", 1e-4),  # plus capturable NAdam's device-side bias corrections
        ("+method=adam_os_g5 delay=5", "fp32", 1e-4),  # capturable AdamO (graph) vs host-side AdamO (eager)
    ],
)
def test_graph_replay_reproduces_the_eager_run(
    root: Path, tmp_path: Path, method: str, precision: str, tol: float
) -> None:
    args = ["device=cuda", f"precision={precision}", *method.split(), "checkpoint_every=1e9"]
    for graph in ("true", "false"):
        assert run_one(compose(_run(root, tmp_path / graph, *args, f"cuda_graph={graph}"))) == 0
    cfg = resolve(compose(_run(root, tmp_path, *args)))
    (g_steps, g_eval), (e_steps, e_eval) = _curves(tmp_path / "true", cfg), _curves(tmp_path / "false", cfg)
    assert g_steps.shape == (40, 3)
    assert results.read_run(run_path(tmp_path / "true", cfg)).info["cuda_graph"] is True
    assert results.read_run(run_path(tmp_path / "false", cfg)).info["cuda_graph"] is False
    diffs = (_rel(g_steps, e_steps), _rel(g_eval, e_eval))
    print(f"graph vs eager, relative difference: steps {diffs[0]:.2e}, evaluation {diffs[1]:.2e}")
    assert max(diffs) <= tol, diffs


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize(
    "members",
    [
        [["optimizer=sgd", "seed=1"], ["optimizer=nesterov", "seed=2"], ["+method=sgd_os_g5", "seed=1"]],
        # the Adam family under a cosine schedule: lr, step counts and bias corrections live on the device
        [["optimizer=adam", "seed=1"], ["+method=adam_os_g5", "seed=2"], ["optimizer=nadam", "seed=3"]],
    ],
    ids=["sgd-constant", "adam-cosine"],
)
def test_graph_replay_reproduces_the_eager_population(
    root: Path, tmp_path: Path, members: list[list[str]]
) -> None:
    extra = ["device=cuda", "schedule=cosine", "delay=5"] if "adam" in members[0][0] else ["device=cuda"]
    for graph in ("true", "false"):
        out = tmp_path / graph
        runs = [resolve(compose(_run(root, out, *extra, f"cuda_graph={graph}", *m))) for m in members]
        assert run_population(runs) == [0, 0, 0]
        assert all(results.read_run(run_path(out, r)).info["cuda_graph"] is (graph == "true") for r in runs)
    for m in members:
        cfg = resolve(compose(_run(root, tmp_path, *extra, *m)))
        (g_steps, g_eval), (e_steps, e_eval) = (
            _curves(tmp_path / "true", cfg),
            _curves(tmp_path / "false", cfg),
        )
        np.testing.assert_array_equal(g_steps, e_steps)
        np.testing.assert_array_equal(g_eval, e_eval)


# ------------------------------------------------------------------------ AdamO(capturable=True) graphs
def _adamo_mlp(dev: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).to(
        dev, torch.float64
    )


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _mse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("exact", [False, True])
def test_adamo_capturable_step_replays_as_a_cuda_graph(foreach: bool, exact: bool) -> None:
    """Forward, backward, AdamO(capturable=True).step() and a base-weight round trip captured in one CUDA
    graph, replayed with new data and a new lr (a device tensor) each time: equal to the eager capturable
    run and to the host path (float64)."""
    from overshoot import AdamO

    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(1)
    steps, warm = 30, 3
    data = [(torch.randn(8, 6, generator=g, dtype=torch.float64).to(dev),
             torch.randn(8, 2, generator=g, dtype=torch.float64).to(dev)) for _ in range(steps)]  # fmt: skip
    lrs = [1e-2 * 0.9**k for k in range(steps)]
    kw = dict(gamma=5.0, delay=4, weight_decay=0.01, exact=exact, amsgrad=exact, foreach=foreach)

    eager = {}
    for capturable in (True, False):
        model = _adamo_mlp(dev)
        lr = torch.tensor(lrs[0], device=dev, dtype=torch.float64) if capturable else lrs[0]
        opt = AdamO(model.parameters(), lr=lr, capturable=capturable, **kw)
        over, base = [], []
        for k, (x, y) in enumerate(data):
            opt.param_groups[0]["lr"] = lrs[k] if not capturable else lr.fill_(lrs[k])
            opt.zero_grad()
            _mse(model, x, y).backward()
            opt.step()
            over.append(_flat(model))
            with opt.base_weights():
                base.append(_flat(model))
        eager[capturable] = torch.stack(over), torch.stack(base)

    model = _adamo_mlp(dev)
    lr = torch.tensor(lrs[0], device=dev, dtype=torch.float64)
    opt = AdamO(model.parameters(), lr=lr, capturable=True, **kw)
    over, base = [], []
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up steps (autograd's streams), recorded as eager steps
        for k in range(warm):
            lr.fill_(lrs[k])
            opt.zero_grad(set_to_none=True)
            _mse(model, *data[k]).backward()
            opt.step()
            over.append(_flat(model))
            with opt.base_weights():
                base.append(_flat(model))
    torch.cuda.current_stream().wait_stream(side)
    sx, sy = data[0][0].clone(), data[0][1].clone()
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        _mse(model, sx, sy).backward()
        opt.step()
        static_over = _flat(model)
        with opt.base_weights():
            static_base = _flat(model)
    for k in range(warm, steps):
        sx.copy_(data[k][0])
        sy.copy_(data[k][1])
        lr.fill_(lrs[k])
        graph.replay()
        over.append(static_over.clone())
        base.append(static_base.clone())
    got = torch.stack(over), torch.stack(base)
    for capturable, ref in eager.items():  # a frozen lr or step count would differ by ~1e-3
        diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, ref, strict=True))
        print(f"graph vs eager (capturable={capturable}): relative difference {diff:.2e}")
        assert diff <= 1e-9


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamo_capturable_gamma0_equals_torch_adamw_capturable(amsgrad: bool) -> None:
    from overshoot import AdamO

    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(2)
    data = [(torch.randn(8, 6, generator=g, dtype=torch.float64).to(dev),
             torch.randn(8, 2, generator=g, dtype=torch.float64).to(dev)) for _ in range(50)]  # fmt: skip
    m1, m2 = _adamo_mlp(dev), _adamo_mlp(dev)
    kw = dict(lr=1e-2, weight_decay=0.05, amsgrad=amsgrad, capturable=True)
    o1 = AdamO(m1.parameters(), gamma=0.0, **kw)
    o2 = torch.optim.AdamW(m2.parameters(), **kw)
    for x, y in data:
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            _mse(m, x, y).backward()
            o.step()
    assert float((_flat(m1) - _flat(m2)).abs().max()) <= 1e-12
    assert all(st["step"].device.type == "cuda" for st in o1.state.values())


@pytest.mark.cuda
@CUDA
def test_adamo_capture_errors() -> None:
    from overshoot import AdamO

    dev = torch.device("cuda")
    model = _adamo_mlp(dev)
    with pytest.raises(ValueError, match="tensor lr on the parameters' device"):
        AdamO(model.parameters(), lr=torch.tensor(1e-3), capturable=True)
    opt = AdamO(model.parameters(), lr=1e-3)
    x, y = (
        torch.randn(8, 6, device=dev, dtype=torch.float64),
        torch.randn(8, 2, device=dev, dtype=torch.float64),
    )
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        _mse(model, x, y).backward()
        opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with (
        pytest.raises(RuntimeError, match="capturable is False: construct it with capturable=True"),
        torch.cuda.graph(graph),
    ):
        opt.step()
