"""preset=tuned resolves to the public code's tuned table (2025-05) for every (task, family); the validation
split and drop_last options leave the hashes of stored runs alone at their defaults."""

from __future__ import annotations

import pytest

from overshoot.config.compose import ConfigError, compose, resolve
from overshoot.config.schema import config_hash

C, K = "constant", "cosine"
# (task, family) -> batch, lr, mu/b1, schedule, epochs, weight decay: that code's tuned table; the tasks it
# does not list keep the release values (constant lr) with Adam weight decay 0.01 where none is given.
TUNED = {
    ("housing", "sgd"): (32, 0.008, 0.9, K, 200, 0.0),
    ("housing", "adam"): (64, 0.002, 0.95, K, 200, 0.01),
    ("vae_mnist", "sgd"): (32, 0.002, 0.85, K, 50, 0.0),
    ("vae_mnist", "adam"): (32, 0.0005, 0.85, K, 50, 0.01),
    ("vae_fmnist", "sgd"): (32, 0.002, 0.85, K, 100, 0.0),
    ("vae_fmnist", "adam"): (64, 0.001, 0.85, K, 100, 0.01),
    ("fmnist", "sgd"): (32, 0.008, 0.95, K, 50, 0.0),
    ("fmnist", "adam"): (64, 0.001, 0.85, K, 50, 0.01),
    ("cifar", "sgd"): (128, 0.01, 0.9, C, 100, 0.0),
    ("cifar", "adam"): (128, 0.001, 0.9, C, 100, 0.01),
    ("cifar100", "sgd"): (256, 0.01, 0.99, C, 250, 5e-4),
    ("cifar100", "adam"): (256, 0.001, 0.9, C, 200, 5e-4),
    ("gpt2_qqp", "sgd"): (64, 3e-4, 0.9, C, 10, 5e-4),
    ("gpt2_qqp", "adam"): (64, 3e-4, 0.9, C, 10, 5e-4),
    # Not in the paper: the release preset's values with a cosine schedule, Adam weight decay 0.01.
    ("digits", "sgd"): (64, 0.03, 0.9, K, 120, 0.0),
    ("digits", "adam"): (64, 0.001, 0.9, K, 120, 0.01),
    ("gpt2_text", "sgd"): (64, 0.03, 0.9, K, 5, 0.0),
    ("gpt2_text", "adam"): (64, 0.001, 0.9, K, 5, 0.01),
}
OPTIMIZERS = {"sgd": ("sgd", "nesterov", "sgd_os"), "adam": ("adam", "nadam", "adam_os")}


def test_tuned_table_covers_every_task() -> None:
    tasks = {t for t, _ in TUNED}
    preset = compose(["preset=tuned"]).preset
    assert set(preset.tasks) == tasks
    assert tasks == {"digits", "housing", "vae_mnist", "vae_fmnist", "fmnist", "cifar"} | {
        "cifar100",
        "gpt2_qqp",
        "gpt2_text",
    }


@pytest.mark.parametrize(("task", "family"), sorted(TUNED))
def test_tuned_preset_resolves_to_the_table(task: str, family: str) -> None:
    batch, lr, mu, schedule, epochs, wd = TUNED[task, family]
    hp = resolve(compose([f"task={task}", f"optimizer={family}", "preset=tuned"])).to_dict()["hparams"]
    assert (hp["batch_size"], hp["schedule"], hp["epochs"]) == (batch, schedule, epochs)
    assert (hp["lr"], hp["momentum"], hp["weight_decay"]) == pytest.approx((lr, mu, wd), rel=1e-12)
    assert (hp["beta2"], hp["eps"], hp["delay"]) == (0.999, 1e-8, 50)


@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_every_method_of_a_family_gets_its_baselines_tuned_values(family: str) -> None:
    hps = [
        resolve(compose(["task=housing", f"optimizer={o}", "preset=tuned"])).to_dict()["hparams"]
        for o in OPTIMIZERS[family]
    ]
    assert hps[0] == hps[1] == hps[2]


def test_tuned_preset_turns_on_the_validation_split() -> None:
    assert resolve(compose(["task=housing", "preset=tuned"])).task_options["val_fraction"] == 0.2
    fm = resolve(compose(["task=fmnist", "preset=tuned"])).task_options
    assert (fm["width"], fm["val_size"]) == ("tuned", 10000)
    assert "val_fraction" not in resolve(compose(["task=housing", "preset=paper"])).task_options


def test_new_options_at_their_defaults_keep_stored_run_hashes() -> None:
    # The hash a housing CM run at seed 10 had before val_fraction and drop_last existed (revision 946b650).
    base = ["task=housing", "optimizer=sgd", "seed=10"]
    assert config_hash(resolve(compose(base)))[:8] == "1ffa454a"
    assert config_hash(resolve(compose([*base, "task.val_fraction=0", "drop_last=true"])))[:8] == "1ffa454a"
    split = resolve(compose([*base, "task.val_fraction=0.2"]))
    ragged = resolve(compose([*base, "drop_last=false"]))
    assert split.task_options["val_fraction"] == 0.2 and ragged.drop_last is False
    assert len({config_hash(split), config_hash(ragged), "1ffa454a"}) == 3
    with pytest.raises(ConfigError, match="drop_last='maybe' is unknown"):
        resolve(compose([*base, "drop_last=maybe"]))
