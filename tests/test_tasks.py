"""Tasks: every task through its real loader on fixture files in the real formats, plans, augmentation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from fixtures import write_cifar10_jpeg, write_cifar_pickles, write_every_dataset
from omegaconf import OmegaConf
from overshoot_tasks import TASKS, DataMissingError, Task, build_task
from overshoot_tasks import augment as A
from overshoot_tasks.base import plan_seed
from overshoot_tasks.data import load_cifar10_jpeg
from torchvision.transforms import InterpolationMode

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "task"
CPU = torch.device("cpu")
FILE_TASKS = ["housing", "vae_fmnist", "vae_mnist", "fmnist", "cifar", "cifar100", "gpt2_qqp", "gpt2_text"]


def cfg(name: str, **overrides: object) -> dict:
    """The task's shipped config (configs/task/<name>.yaml) with overrides."""
    node = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert isinstance(node, dict) and node["name"] == name
    node.update(overrides)
    return node


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a small file of every dataset, in the layouts the README and torchvision use."""
    return write_every_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tasks(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Task]]:
    """Every task built once from its shipped config on the fixture root (gpt2_text with shorter windows)."""
    small = {"gpt2_text": {"seq_len": 32}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OVERSHOOT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield {name: build_task(cfg(name, **small.get(name, {})), root, CPU, torch.float32) for name in TASKS}


# -- models -----------------------------------------------------------------------------------------

PARAMS = {
    "housing": 32_101,
    "vae_fmnist": 1_069_153,
    "vae_mnist": 1_069_153,
    "fmnist": 824_458,
    "cifar": 895_210,
    "cifar100": 11_227_812,  # torchvision resnet18(num_classes=100)
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_the_paper(tasks: dict[str, Task], name: str) -> None:
    model = tasks[name].build_model()
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_resnet_is_torchvision_resnet18(tasks: dict[str, Task]) -> None:
    from torchvision.models import resnet18

    ours = tasks["cifar100"].build_model()
    ref = resnet18(num_classes=100)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in ref.named_parameters()
    ]


def test_tuned_2c2d_is_smaller(root: Path) -> None:
    task = build_task(cfg("fmnist", width="tuned"), root, CPU, torch.float32)
    n = sum(p.numel() for p in task.build_model().parameters())
    assert n == (9 * 16 + 16) + (9 * 16 * 32 + 32) + (1568 * 64 + 64) + (64 * 10 + 10)


# -- training through the real loaders --------------------------------------------------------------

LR = {
    "digits": 0.5,
    "housing": 0.01,
    "vae_fmnist": 1e-4,
    "vae_mnist": 1e-4,
    "fmnist": 0.05,
    "cifar": 0.02,
    "cifar100": 0.05,
    "gpt2_qqp": 0.5,
    "gpt2_text": 0.05,
}


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_trains_a_few_sgd_steps(tasks: dict[str, Task], name: str) -> None:
    task = tasks[name]
    assert task.name == name and isinstance(task, Task)
    assert task.metric in ("accuracy", "loss")
    torch.manual_seed(0)
    model = task.build_model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR[name], momentum=0.0)
    plan = task.epoch_plan(seed=0, epoch=0, batch_size=8)
    assert plan.steps == task.n_train // 8
    batch = task.train_batch(plan, 0)
    model.eval()  # no dropout: the same batch must then get a lower loss
    losses = []
    for _ in range(3):
        loss, correct = task.criterion(model(*task.inputs(batch)), batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert (correct is None) == (task.metric == "loss")
        if correct is not None:
            assert correct.dim() == 0 and 0 <= int(correct) <= 8
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses
    model.train()
    b = task.train_batch(plan, plan.steps - 1)
    with torch.no_grad():
        assert torch.isfinite(task.criterion(model(*task.inputs(b)), b)[0])


@pytest.mark.parametrize("name", list(TASKS))
def test_eval_batches_cover_each_split_once_and_are_deterministic(tasks: dict[str, Task], name: str) -> None:
    task = tasks[name]
    torch.manual_seed(0)
    model = task.build_model().eval()
    splits = [s for s in ("val", "test") if task.has_split(s)]
    assert "test" in splits
    for split in splits:
        first, again = list(task.eval_batches(split, 16)), list(task.eval_batches(split, 16))
        assert len(first) == len(again) and all(_same(a, b) for a, b in zip(first, again, strict=True))
        with torch.no_grad():
            loss, _ = task.criterion(model(*task.inputs(first[-1])), first[-1])
        assert torch.isfinite(loss)


def test_splits_are_as_in_the_paper(tasks: dict[str, Task]) -> None:
    # fixtures: 200 / 50 (F)MNIST images, 40 / 20 CIFAR-10 JPEGs, 100 / 40 CIFAR-100, 300 houses
    assert tasks["fmnist"].n_train == tasks["vae_fmnist"].n_train == tasks["vae_mnist"].n_train == 180
    assert sum(len(b["y"]) for b in tasks["fmnist"].eval_batches("val", 64)) == 20
    assert sum(len(b["y"]) for b in tasks["fmnist"].eval_batches("test", 64)) == 50
    assert tasks["cifar"].n_train == 40 and not tasks["cifar"].has_split("val")
    assert tasks["cifar100"].n_train == 100 and not tasks["cifar100"].has_split("val")
    assert tasks["housing"].n_train == 240 and not tasks["housing"].has_split("val")
    assert tasks["housing"].metric_scale == 100.0 and tasks["housing"].metric == "loss"
    assert tasks["digits"].n_train == 1437 and not tasks["digits"].has_split("val")
    assert tasks["gpt2_qqp"].n_train == 48 and not tasks["gpt2_qqp"].has_split("val")


def test_housing_features_follow_sklearn(root: Path, tasks: dict[str, Task]) -> None:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    raw = np.genfromtxt(root / "california-housing" / "cal_housing.csv", delimiter=",", names=True)
    hh = raw["households"]
    x = np.stack(
        [
            raw["median_income"],
            raw["housing_median_age"],
            raw["total_rooms"] / hh,
            raw["total_bedrooms"] / hh,
            raw["population"],
            raw["population"] / hh,
            raw["latitude"],
            raw["longitude"],
        ],
        1,
    )
    x_tr, x_te, _, y_te = train_test_split(x, raw["median_house_value"] / 1e5, test_size=0.2, random_state=42)
    x_te = StandardScaler().fit(x_tr).transform(x_te)
    (test,) = list(tasks["housing"].eval_batches("test", 1000))
    np.testing.assert_allclose(test["x"].numpy(), x_te, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(test["y"].numpy(), y_te, rtol=1e-6)


def test_cifar_reads_pickles_when_present_and_caches_decoded_jpegs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cifar_pickles(tmp_path, 10)
    task = build_task({"name": "cifar"}, tmp_path, CPU, torch.float32)
    assert task.n_train == 100  # from the pickles, not JPEGs
    write_cifar10_jpeg(tmp_path, per_class_train=2, per_class_test=1)
    monkeypatch.setenv("OVERSHOOT_CACHE", str(tmp_path / "cache"))
    first = load_cifar10_jpeg("cifar", tmp_path)
    assert len(list((tmp_path / "cache").glob("cifar10-jpeg-*.pt"))) == 1
    again = load_cifar10_jpeg("cifar", tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (20, 3, 32, 32) and first[0].dtype == torch.uint8
    assert first[1].tolist() == [c for c in range(10) for _ in range(2)]
    jpeg = build_task({"name": "cifar", "source": "jpeg"}, tmp_path, CPU, torch.float32)
    assert jpeg.n_train == 20


def test_jpeg_decoding_matches_pil(tmp_path: Path) -> None:
    import io
    import zipfile

    from overshoot_tasks.data import _decode_jpegs
    from PIL import Image

    with zipfile.ZipFile(write_cifar10_jpeg(tmp_path, 1, 1) / "test.zip") as zf:
        blobs = [zf.read(n) for n in sorted(zf.namelist())]
    pil = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
    assert torch.equal(_decode_jpegs(blobs), torch.from_numpy(pil).permute(0, 3, 1, 2))


def test_vae_noise_comes_from_the_plan(tasks: dict[str, Task]) -> None:
    task = tasks["vae_fmnist"]
    b = task.train_batch(task.epoch_plan(3, 0, 16), 0)
    assert b["eps"].shape == (16, 8) and b["x"].shape == (16, 1, 28, 28)
    assert float(b["x"].min()) >= 0.0 and float(b["x"].max()) <= 1.0
    torch.manual_seed(0)
    model = task.build_model()
    out1 = model(*task.inputs(b))
    torch.manual_seed(123)  # the global RNG does not matter: the noise is in the batch
    out2 = model(*task.inputs(b))
    assert all(torch.equal(a, c) for a, c in zip(out1, out2, strict=True))


def test_qqp_batches_are_padded_per_batch(tasks: dict[str, Task], root: Path) -> None:
    from transformers import AutoTokenizer

    task = tasks["gpt2_qqp"]
    tok = AutoTokenizer.from_pretrained(str(root / "gpt2"))
    plan = task.epoch_plan(0, 0, 8)
    b = task.train_batch(plan, 0)
    lengths = b["attention_mask"].sum(1)
    width = b["input_ids"].shape[1]
    assert width % 8 == 0 and width - 8 < int(lengths.max()) <= width
    assert bool((b["input_ids"][b["attention_mask"] == 0] == tok.eos_token_id).all())
    from datasets import load_from_disk

    row = load_from_disk(str(root / "glue-qqp"))["train"][int(plan.index[0])]
    ids = tok(row["question1"] + "  " + row["question2"])["input_ids"]
    assert b["input_ids"][0, : len(ids)].tolist() == ids and int(lengths[0]) == len(ids)
    assert int(b["y"][0]) == row["label"]
    trainable = [n for n, p in task.build_model().named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("score" in n for n in trainable)
    assert all("lora_" in n or "score" in n for n in trainable)


def test_qqp_reads_the_hub_parquet_files(tmp_path: Path, root: Path, tasks: dict[str, Task]) -> None:
    from datasets import load_from_disk

    saved = load_from_disk(str(root / "glue-qqp"))
    for split in ("train", "validation"):
        saved[split].to_parquet(str(tmp_path / "glue-qqp" / "qqp" / f"{split}-00000-of-00001.parquet"))
    opts = {"path": str(tmp_path / "glue-qqp"), "model_dir": str(root / "gpt2")}
    task = build_task(cfg("gpt2_qqp", **opts), tmp_path, CPU, torch.float32)
    assert task.n_train == 48
    disk = tasks["gpt2_qqp"]
    assert _same(task.train_batch(task.epoch_plan(0, 0, 8), 2), disk.train_batch(disk.epoch_plan(0, 0, 8), 2))


def test_gpt2_text_windows_and_bpe_tokenizer(tasks: dict[str, Task], root: Path) -> None:
    task = tasks["gpt2_text"]
    b = task.train_batch(task.epoch_plan(0, 0, 4), 0)
    assert b["x"].shape == (4, 32) and torch.equal(b["x"][:, 1:], b["y"][:, :-1])
    bpe = build_task(cfg("gpt2_text", tokenizer="gpt2", seq_len=16), root, CPU, torch.float32)
    assert bpe.train_batch(bpe.epoch_plan(0, 0, 4), 0)["x"].max() < 263  # the fixture's vocabulary
    with pytest.raises(DataMissingError, match="tokenizer"):
        build_task(cfg("gpt2_text", tokenizer="gpt2", tokenizer_dir="nowhere"), root, CPU, torch.float32)


# -- epoch plans ------------------------------------------------------------------------------------


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", list(TASKS))
def test_epoch_plan_is_a_pure_function_of_seed_and_epoch(tasks: dict[str, Task], name: str) -> None:
    task = tasks[name]
    bs = 4
    p1, p2 = task.epoch_plan(7, 2, bs), task.epoch_plan(7, 2, bs)
    assert p1.steps == task.n_train // bs
    for k in (0, p1.steps - 1):
        assert _same(task.train_batch(p1, k), task.train_batch(p2, k))
    other_seed, other_epoch = task.epoch_plan(8, 2, bs), task.epoch_plan(7, 3, bs)
    assert not torch.equal(p1.index, other_seed.index) and not torch.equal(p1.index, other_epoch.index)
    assert not _same(task.train_batch(p1, 0), task.train_batch(other_seed, 0))
    if task.name not in ("gpt2_text",):  # a permutation of the training set (drop-last)
        assert len(set(p1.index.tolist())) == p1.steps * bs
    with pytest.raises(IndexError):
        task.train_batch(p1, p1.steps)
    with pytest.raises(ValueError, match="batch_size"):
        task.epoch_plan(0, 0, task.n_train + 1)


def test_plan_seed_is_stable_and_distinct() -> None:
    assert plan_seed(0, 0) == plan_seed(0, 0) != plan_seed(0, 1) != plan_seed(1, 0)
    assert 0 <= plan_seed(10**6, 10**4) < 2**63


# -- augmentation -----------------------------------------------------------------------------------


def test_cifar_augmentation_is_deterministic_given_the_plan_and_varies_by_epoch(
    tasks: dict[str, Task],
) -> None:
    task = tasks["cifar"]
    b1 = task.train_batch(task.epoch_plan(1, 0, 16), 0)
    b2 = task.train_batch(task.epoch_plan(1, 0, 16), 0)
    assert (
        torch.equal(b1["x"], b2["x"]) and b1["x"].shape == (16, 3, 32, 32) and b1["x"].dtype == torch.float32
    )
    plain = next(iter(task.eval_batches("test", 16)))["x"]
    lo = (0 - torch.tensor((0.4914, 0.4822, 0.4465))) / torch.tensor((0.247, 0.243, 0.261))
    hi = (1 - torch.tensor((0.4914, 0.4822, 0.4465))) / torch.tensor((0.247, 0.243, 0.261))
    for x in (b1["x"], plain):
        per_channel = x.transpose(0, 1).flatten(1)
        assert bool((per_channel.min(1).values >= lo.double() - 1e-6).all())
        assert bool((per_channel.max(1).values <= hi.double() + 1e-6).all())


def test_augmentation_off_gives_the_plain_images(root: Path) -> None:
    task = build_task(cfg("cifar", augment=False), root, CPU, torch.float32)
    plan = task.epoch_plan(0, 0, 8)
    assert not plan.extra
    b = task.train_batch(plan, 0)
    raw = task.train["x"][plan.index[:8]].float() / 255
    mean = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
    std = torch.tensor((0.247, 0.243, 0.261)).view(1, 3, 1, 1)
    torch.testing.assert_close(b["x"], (raw - mean) / std)


def test_augmentation_ops_match_torchvision_per_sample() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32, generator=gen, dtype=torch.float64)
    f = torch.tensor([0.6, 0.8, 1.0, 1.1, 1.3, 1.4], dtype=torch.float64)
    hue = torch.tensor([-0.08, -0.03, 0.0, 0.01, 0.05, 0.08], dtype=torch.float64)
    deg = torch.tensor([-5.0, -2.5, 0.0, 1.0, 3.3, 5.0], dtype=torch.float64)
    cases = [
        (A.adjust_brightness(x, f), [TF.adjust_brightness(x[i], float(f[i])) for i in range(6)], 0.0),
        (A.adjust_contrast(x, f), [TF.adjust_contrast(x[i], float(f[i])) for i in range(6)], 0.0),
        (A.adjust_saturation(x, f), [TF.adjust_saturation(x[i], float(f[i])) for i in range(6)], 0.0),
        (A.adjust_hue(x, hue), [TF.adjust_hue(x[i].float(), float(hue[i])).double() for i in range(6)], 1e-5),
        (
            A.rotate(x, deg),
            [TF.rotate(x[i], float(deg[i]), InterpolationMode.NEAREST) for i in range(6)],
            0.0,
        ),
    ]
    params = A.draw_params(gen, 6, 32, CPU)
    start, end = A.corner_points(params["aug_corners"], 32)
    warped = A.warp_perspective(x, params["aug_homography"])
    ref = [TF.perspective(x[i], start[i].long().tolist(), end[i].long().tolist()) for i in range(6)]
    cases.append((warped, ref, 1e-4))
    u8 = (x * 255).to(torch.uint8)
    crops = [TF.crop(TF.pad(u8[i], [4]), *params["aug_crop"][i].tolist(), 32, 32) for i in range(6)]
    cases.append((A.random_crop(u8, params["aug_crop"]), crops, 0.0))
    for ours, theirs, tol in cases:
        assert float((ours.double() - torch.stack(theirs).double()).abs().max()) <= tol


def test_augmented_batch_equals_torchvision_ops_applied_per_sample(tasks: dict[str, Task]) -> None:
    task = tasks["cifar"]
    plan = task.epoch_plan(5, 1, 8)
    ours = task.train_batch(plan, 1)["x"]
    rows = plan.rows(1)
    p = {k: v[rows] for k, v in plan.extra.items()}
    jitter = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    mean = torch.tensor((0.4914, 0.4822, 0.4465)).view(3, 1, 1)
    std = torch.tensor((0.247, 0.243, 0.261)).view(3, 1, 1)
    for i, idx in enumerate(plan.index[rows].tolist()):
        img = TF.crop(TF.pad(task.train["x"][idx], [4]), *p["aug_crop"][i].tolist(), 32, 32)
        img = TF.hflip(img) if bool(p["aug_flip"][i]) else img
        img = img.float() / 255
        for j in p["aug_order"][i].tolist():
            img = jitter[j](img, float(p["aug_jitter"][i, j]))
        img = TF.rotate(img, float(p["aug_angle"][i]), InterpolationMode.NEAREST)
        if bool(p["aug_persp"][i]):
            start, end = A.corner_points(p["aug_corners"][i : i + 1], 32)
            img = TF.perspective(img, start[0].long().tolist(), end[0].long().tolist())
        torch.testing.assert_close(ours[i], (img - mean) / std, atol=1e-4, rtol=0)


def test_augmentation_parameters_have_torchvision_ranges() -> None:
    p = A.draw_params(torch.Generator().manual_seed(0), 20000, 32, CPU)
    assert int(p["aug_crop"].min()) == 0 and int(p["aug_crop"].max()) == 8
    assert 0.45 < float(p["aug_flip"].float().mean()) < 0.55
    assert 0.17 < float(p["aug_persp"].float().mean()) < 0.23
    j = p["aug_jitter"]
    assert float(j[:, :3].min()) >= 0.6 and float(j[:, :3].max()) <= 1.4
    assert float(j[:, 3].abs().max()) <= 0.08 and float(p["aug_angle"].abs().max()) <= 5.0
    assert int(p["aug_corners"].min()) == 0 and int(p["aug_corners"].max()) == 3
    assert torch.equal(p["aug_order"].sort(1).values, torch.arange(4).expand(20000, 4))


# -- purity under torch.func (population mode) ------------------------------------------------------


@pytest.mark.parametrize("name", ["housing", "vae_fmnist", "fmnist"])
def test_criterion_and_inputs_work_under_vmap(tasks: dict[str, Task], name: str) -> None:
    from torch.func import functional_call, stack_module_state, vmap

    task = tasks[name]
    models = []
    for s in range(2):
        torch.manual_seed(s)
        models.append(task.build_model())
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    batches = [task.train_batch(task.epoch_plan(s, 0, 8), 0) for s in range(2)]
    stacked = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}

    def member_loss(p: dict, bu: dict, batch: dict) -> torch.Tensor:
        out = functional_call(models[0], (p, bu), task.inputs(batch))
        return task.criterion(out, batch)[0]

    together = vmap(member_loss)(params, buffers, stacked)
    alone = torch.stack(
        [task.criterion(m(*task.inputs(b)), b)[0] for m, b in zip(models, batches, strict=True)]
    )
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILE_TASKS)
def test_missing_files_give_one_line_saying_what_to_put_where(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataMissingError) as err:
        build_task(cfg(name), tmp_path, CPU, torch.float32)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert "\n" not in msg and msg.startswith(f"{name}: missing {tmp_path}") and "OVERSHOOT_DATA" in msg


def test_unknown_task_and_option_are_value_errors(root: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*digits"):
        build_task({"name": "nope"}, root, CPU, torch.float32)
    with pytest.raises(ValueError, match=r"unknown option 'widht'.*width"):
        build_task({"name": "fmnist", "widht": "tuned"}, root, CPU, torch.float32)
    with pytest.raises(ValueError, match="width"):
        build_task({"name": "fmnist", "width": "huge"}, root, CPU, torch.float32)


def test_every_task_has_a_config() -> None:
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted([*TASKS, "custom"])  # custom: _target_


# -- the real data (developer machines and the GPU box) ---------------------------------------------

REAL = Path(os.environ.get("OVERSHOOT_DATA", "/work/shared/data"))


@pytest.mark.skipif(
    not (REAL / "fashion-mnist").is_dir() or not (REAL / "cifar10-jpeg").is_dir(),
    reason=f"real data not found at {REAL} (set OVERSHOOT_DATA to the shared data folder)",
)
def test_real_fashion_mnist_and_cifar10_jpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERSHOOT_CACHE", raising=False)  # the user cache: decoded once per machine
    fm = build_task({"name": "fmnist"}, REAL, CPU, torch.float32)
    assert fm.n_train == 54000
    assert sum(len(b["y"]) for b in fm.eval_batches("val", 10000)) == 6000
    assert sum(len(b["y"]) for b in fm.eval_batches("test", 10000)) == 10000
    x_tr, y_tr, x_te, _ = load_cifar10_jpeg("cifar", REAL)
    assert x_tr.shape == (50000, 3, 32, 32) and x_te.shape == (10000, 3, 32, 32)
    assert torch.equal(torch.bincount(y_tr), torch.full((10,), 5000))
    mean = (x_tr.double() / 255).mean(dim=(0, 2, 3))
    torch.testing.assert_close(
        mean, torch.tensor([0.4913, 0.4821, 0.4465], dtype=torch.float64), atol=2e-4, rtol=0
    )


# -- on a GPU: batches without host synchronisation -----------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(TASKS))
def test_train_batches_do_not_synchronise_the_host(root: Path, name: str) -> None:
    small = {"gpt2_text": {"seq_len": 32}}
    task = build_task(cfg(name, **small.get(name, {})), root, torch.device("cuda"), torch.float32)
    torch.manual_seed(0)
    model = task.build_model()
    plan = task.epoch_plan(0, 0, 8)
    own_model = name not in ("gpt2_qqp", "gpt2_text")  # Hugging Face forwards may sync; not ours to fix
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for k in range(2):
            batch = task.train_batch(plan, k)
            if own_model:
                loss, _ = task.criterion(model(*task.inputs(batch)), batch)
                loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(v.is_cuda for v in batch.values())
