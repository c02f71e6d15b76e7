"""CUDA-graph replay of the training step: when it applies, and (on a GPU) that it changes no number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from overshoot.cli import run_one
from overshoot.config import ConfigError, compose, resolve
from overshoot.loop import graph_blocker, use_graph
from overshoot.population import run_population
from overshoot.store import load_run, run_path

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
    adam = resolve(compose(_run(root, tmp_path, "optimizer=adam_os")))
    assert "bias correction" in str(graph_blocker(adam, cuda, model))
    for torch_adam in ("adam", "nadam"):  # capturable: step counts on the device
        assert (
            graph_blocker(resolve(compose(_run(root, tmp_path, f"optimizer={torch_adam}"))), cuda, model)
            is None
        )
    cosine = resolve(compose(_run(root, tmp_path, "optimizer=sgd", "schedule=cosine")))
    assert "schedule=cosine" in str(graph_blocker(cosine, cuda, model))
    dropout = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert "dropout" in str(graph_blocker(ok, cuda, dropout))
    assert use_graph(ok, cuda, model) and not use_graph({**ok, "cuda_graph": False}, cuda, model)
    assert not use_graph(adam, cuda, model)  # auto: eager where a graph cannot be used
    with pytest.raises(ValueError, match=r"cuda_graph=true is impossible .*bias correction.*cuda_graph=auto"):
        use_graph({**adam, "cuda_graph": True}, cuda, model)
    with pytest.raises(ConfigError, match="cuda_graph=sometimes is unknown"):
        resolve(compose(_run(root, tmp_path, "cuda_graph=sometimes")))


def test_cpu_runs_record_that_they_ran_eagerly(root: Path, tmp_path: Path) -> None:
    args = _run(root, tmp_path, "device=cpu", "optimizer=sgd", "max_steps=5")
    assert run_one(compose(args)) == 0
    assert load_run(run_path(tmp_path, resolve(compose(args)))).info["cuda_graph"] is False


def test_impossible_graph_is_a_one_line_error(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_one(compose(_run(root, tmp_path, "device=cpu", "optimizer=sgd", "cuda_graph=true"))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda_graph=true is impossible" in err[0] and "device=cuda" in err[0]


def _curves(out: Path, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    run = load_run(run_path(out, cfg))
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
    ],
)
def test_graph_replay_reproduces_the_eager_run(
    root: Path, tmp_path: Path, method: str, precision: str, tol: float
) -> None:
    args = ["device=cuda", f"precision={precision}", method, "checkpoint_every=1e9"]
    for graph in ("true", "false"):
        assert run_one(compose(_run(root, tmp_path / graph, *args, f"cuda_graph={graph}"))) == 0
    cfg = resolve(compose(_run(root, tmp_path, *args)))
    (g_steps, g_eval), (e_steps, e_eval) = _curves(tmp_path / "true", cfg), _curves(tmp_path / "false", cfg)
    assert g_steps.shape == (40, 3)
    assert load_run(run_path(tmp_path / "true", cfg)).info["cuda_graph"] is True
    assert load_run(run_path(tmp_path / "false", cfg)).info["cuda_graph"] is False
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
        assert all(load_run(run_path(out, r)).info["cuda_graph"] is (graph == "true") for r in runs)
    for m in members:
        cfg = resolve(compose(_run(root, tmp_path, *extra, *m)))
        (g_steps, g_eval), (e_steps, e_eval) = (
            _curves(tmp_path / "true", cfg),
            _curves(tmp_path / "false", cfg),
        )
        np.testing.assert_array_equal(g_steps, e_steps)
        np.testing.assert_array_equal(g_eval, e_eval)
