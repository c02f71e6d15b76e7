"""overshoot.train.matmul_conv: the GEMM forms of the convolutions compute what torch's modules compute."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from overshoot.config.compose import compose, resolve
from overshoot.train.matmul_conv import MatmulConv2d, matmul_convs
from overshoot.train.population import Population

LAYERS = [
    (lambda: nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1)), (5, 3, 12, 12)),
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 4, 2, 1), nn.Conv2d(4, 3, (3, 1), (1, 2), (1, 0))), (3, 2, 9, 8)),
    (
        lambda: nn.Sequential(
            nn.ConvTranspose2d(6, 4, 3, 2, 1, output_padding=1), nn.ConvTranspose2d(4, 2, 4, 2, 1)
        ),
        (5, 6, 4, 4),
    ),
    (
        lambda: nn.Sequential(
            nn.ConvTranspose2d(3, 4, 5, 3, 2, output_padding=2),
            nn.ConvTranspose2d(4, 2, 2, 2),
            nn.ConvTranspose2d(2, 2, (3, 2), 1, (1, 0)),
        ),
        (2, 3, 3, 5),
    ),
    (
        lambda: nn.Sequential(
            nn.ConvTranspose2d(3, 4, 3, 2, 0, output_padding=1),  # output padding past the last tap
            nn.ConvTranspose2d(4, 2, 5, (2, 3), (4, 1), output_padding=(1, 2), bias=False),  # cropped rows
        ),
        (2, 3, 5, 4),
    ),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


@pytest.mark.parametrize(
    ("make", "shape"),
    LAYERS,
    ids=["conv", "strided-conv", "conv-transpose", "conv-transpose-shapes", "conv-transpose-padding"],
)
def test_gemm_forms_match_torch_under_vmap(make, shape) -> None:
    torch.manual_seed(0)
    model = make().double()
    gemm = matmul_convs(model)
    assert not any(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in gemm.modules())
    assert [n for n, _ in gemm.named_parameters()] == [n for n, _ in model.named_parameters()]
    x = torch.randn(*shape, dtype=torch.float64)
    assert _rel(gemm(x), model(x)) < 1e-14
    # three members with their own weights and inputs: the population's use
    params = {
        k: torch.stack([v.detach() * (1 + 0.1 * i) for i in range(3)]).requires_grad_()
        for k, v in model.named_parameters()
    }
    xs = torch.randn(3, *shape, dtype=torch.float64)

    def total(m: nn.Module) -> torch.Tensor:
        return vmap(lambda p, x: functional_call(m, p, (x,)).pow(2).sum())(params, xs).sum()

    ref = torch.autograd.grad(total(model), list(params.values()))
    got = torch.autograd.grad(total(gemm), list(params.values()))
    for r, g in zip(ref, got, strict=True):
        assert _rel(g, r) < 1e-13


def test_unsupported_convolutions_are_refused() -> None:
    with pytest.raises(ValueError, match="groups=1"):
        MatmulConv2d(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="numeric padding"):
        MatmulConv2d(nn.Conv2d(4, 4, 3, padding="same"))


@pytest.mark.parametrize("task", ["fmnist", "vae_fmnist"])
def test_population_losses_and_gradients_do_not_depend_on_the_conv_form(
    task: str, root: Path, tmp_path: Path
) -> None:
    from overshoot_tasks import build_task

    base = [f"task={task}", "precision=fp64", "device=cpu", f"data.root={root}", f"out={tmp_path}"]
    runs = [resolve(compose([*base, "optimizer=sgd", f"seed={s}"])) for s in (1, 2)]
    dev = torch.device("cpu")
    t = build_task(runs[0].task_options, root, dev, torch.float64)
    b = t.train_batch(t.epoch_plan(1, 0, 4), 0)
    out = {}
    for conv in ("grouped", "matmul", "conv2d-matmul"):
        pop = Population(runs, t, dev, conv)
        loss = pop.losses(pop.params, b, batched_data=False)
        out[conv] = (loss, torch.autograd.grad(loss.sum(), list(pop.params.values())))
    for conv in ("matmul", "conv2d-matmul"):
        assert _rel(out[conv][0], out["grouped"][0]) < 1e-13
        for g, r in zip(out[conv][1], out["grouped"][1], strict=True):
            assert _rel(g, r) < 1e-12
    with pytest.raises(ValueError, match="conv='gemm'"):
        Population(runs, t, dev, "gemm")
