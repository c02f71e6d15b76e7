"""Fair comparisons: the validation split and drop_last, the tune sweep, selection on validation only, the
held-out re-runs and the report, and the new metrics (bootstrap interval, time-to-target with censoring)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fixtures import write_housing_csv
from overshoot_tasks import build_task
from overshoot_tasks.base import steps_per_epoch

from overshoot.analysis import metrics as M
from overshoot.analysis import results, tuning
from overshoot.cli import manifest
from overshoot.cli import tune as tune_cli
from overshoot.config.compose import compose, resolve
from overshoot.store.writer import RunWriter, run_path
from overshoot.train.lifecycle import run_one, run_population
from overshoot.train.runtime import graph_blocker
from overshoot.train.sweep import run_sweep

METHODS = ["sgd", "nesterov", "sgd_os_g3", "sgd_os_g5", "sgd_os_g7"]
METHODS += ["adam", "nadam", "adam_os_g3", "adam_os_g5", "adam_os_g7"]
LRS = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032]


# -- the validation split and drop_last ----------------------------------------------------------------


def test_housing_validation_split_has_the_public_codes_row_counts(tmp_path: Path) -> None:
    write_housing_csv(tmp_path / "california-housing" / "cal_housing.csv", n=20_640)
    opts = {"name": "housing", "val_fraction": 0.2}
    task = build_task(opts, tmp_path, "cpu", torch.float64)
    sizes = {s: int(d["x"].shape[0]) for s, d in task.splits.items()}
    assert (task.n_train, sizes["val"], sizes["test"]) == (13_209, 3_303, 4_128)
    # The scaler is fit on the 13,209 training rows only.
    assert torch.allclose(task.train["x"].mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-12)
    assert task.splits["val"]["x"].mean(0).abs().max() > 1e-4
    plain = build_task({"name": "housing"}, tmp_path, "cpu", torch.float64)
    assert plain.n_train == 16_512 and not plain.has_split("val")  # the paper's release: no validation
    # The test rows are the same with and without the validation split.
    assert torch.equal(plain.splits["test"]["y"], task.splits["test"]["y"])
    with pytest.raises(ValueError, match=r"val_fraction=1.0 must be in \[0, 1\)"):
        build_task({"name": "housing", "val_fraction": 1.0}, tmp_path, "cpu", torch.float64)


def test_drop_last_false_keeps_the_last_partial_batch(root: Path) -> None:
    assert (steps_per_epoch(13_209, 64), steps_per_epoch(13_209, 64, drop_last=False)) == (206, 207)
    task = build_task({"name": "housing", "val_fraction": 0.2}, root, "cpu", torch.float64)
    assert task.n_train == 192  # 300 fixture rows: 60 test, 48 validation
    full, ragged = task.epoch_plan(3, 0, 50), task.epoch_plan(3, 0, 50, drop_last=False)
    assert (full.steps, ragged.steps, full.partial, ragged.partial) == (3, 4, False, True)
    assert torch.equal(ragged.index[:150], full.index)  # the same permutation, its tail kept
    assert sorted(ragged.index.tolist()) == list(range(192))  # every sample once per epoch
    assert task.train_batch(ragged, 3)["x"].shape[0] == 42


def _drop_last_runs(root: Path, out: Path) -> list[dict]:
    common = [
        "task=housing",
        "task.val_fraction=0.2",
        "batch_size=50",
        "epochs=2",
        "schedule=cosine",
        "drop_last=false",
        "precision=fp64",
        "device=cpu",
        "progress=none",
        f"data.root={root}",
        f"out={out}",
    ]
    members = [["optimizer=sgd", "seed=1"], ["+method=sgd_os_g3", "seed=2"]]
    return [resolve(compose(common + m)) for m in members]


def test_drop_last_false_trains_single_runs_and_populations_alike(root: Path, tmp_path: Path) -> None:
    runs = _drop_last_runs(root, tmp_path / "pop")
    assert run_population(runs) == [0, 0]
    for r in runs:
        single = r.replace(out=str(tmp_path / "single"))
        cfg = compose(tune_cli.overrides_for(single.to_dict()))
        assert run_one(cfg) == 0
        p, s = (
            results.read_run(run_path(r.out, r)).steps(),
            results.read_run(run_path(tmp_path / "single", r)).steps(),
        )
        assert list(s["epoch"]) == [0] * 4 + [1] * 4  # 4 steps per epoch: 3 of 50 samples, one of 42
        assert np.abs(p["base_loss"].to_numpy() - s["base_loss"].to_numpy()).max() <= 1e-10
        assert s["lr"].iloc[-1] > 0 and s["lr"].iloc[0] == r.hparams.lr  # cosine over 8 steps
    # The last batch has another shape: no CUDA graph replays it, single or population.
    cuda = torch.device("cuda")
    assert "drop_last=false" in str(graph_blocker(runs[0], cuda))
    assert "drop_last=false" in str(graph_blocker(runs[0], cuda, population=True))
    assert graph_blocker(runs[0].replace(drop_last=True), cuda, population=True) is None


# -- the tune sweep ------------------------------------------------------------------------------------


def test_tune_sweep_gives_every_method_the_same_trials_on_tuning_seeds() -> None:
    jobs = [dict(x.split("=", 1) for x in job) for job in manifest.expand(["+sweep=tune", "task=housing"])]
    assert len(jobs) == 10 * 7 * 2
    trials = {(j["+method"], float(j["lr"]), int(j["seed"])) for j in jobs}
    assert len(trials) == 140
    assert {m for m, _, _ in trials} == set(METHODS)
    assert sorted({lr for _, lr, _ in trials}) == LRS
    tuning_seeds = {s for _, _, s in trials}
    assert tuning_seeds == {1, 2} and not tuning_seeds & set(tuning.HELDOUT_SEEDS)
    per_method = {m: sorted((lr, s) for mm, lr, s in trials if mm == m) for m in METHODS}
    assert len({tuple(v) for v in per_method.values()}) == 1  # the same budget by construction
    run = resolve(compose(manifest.expand(["+sweep=tune", "task=housing"])[0]))
    assert run.task_options["val_fraction"] == 0.2 and run.population is True
    # An axis on the command line replaces the preset's, for every method alike.
    assert len(manifest.expand(["+sweep=tune", "task=digits", "lr=0.01,0.1", "momentum=0.85,0.9"])) == 80


# -- selection on validation only ----------------------------------------------------------------------


def _fake_run(
    out: Path, method: str, lr: float, seed: int, val: list[float], test: list[float], **kw
) -> None:
    """A completed digits run of ``method`` at ``lr`` whose epochs.csv holds the given accuracies."""
    cfg = resolve(
        compose([f"+method={method}", f"lr={lr}", f"seed={seed}", "task.val_fraction=0.2", f"out={out}"])
    )
    w = RunWriter(run_path(out, cfg))
    w.start(cfg, {"metric": "accuracy", "metric_scale": 1.0}, resume_rows=(0, 0))
    n = len(val)
    w.append_steps(
        {
            "step": list(range(n)),
            "epoch": list(range(n)),
            "base_loss": [1.0 / (i + 1) for i in range(n)],
            "train_loss": [1.0] * n,
            "lr": [lr] * n,
            "grad_norm": [1.0] * n,
            "time_s": [0.1 * (i + 1) for i in range(n)],
        }
    )
    rows: dict[str, list] = {"epoch": [], "split": [], "loss": [], "accuracy": []}
    for e, (v, t) in enumerate(zip(val, test, strict=True)):
        for split, acc in (("val", v), ("test", t)):
            rows["epoch"].append(e)
            rows["split"].append(split)
            rows["loss"].append(1.0 - acc)
            rows["accuracy"].append(acc)
    w.append_epochs(rows)
    w.write_info(status=kw.get("status", "completed"), steps=n)


def test_selection_uses_validation_and_never_the_test_set(tmp_path: Path) -> None:
    tune = tmp_path / "study" / "tuning"
    for seed in (1, 2):
        # lr 0.001 wins on validation, lr 0.01 on test: the selection must pick 0.001.
        _fake_run(tune, "sgd", 0.001, seed, val=[0.5, 0.9, 0.8], test=[0.5, 0.6, 0.6])
        _fake_run(tune, "sgd", 0.01, seed, val=[0.5, 0.7, 0.7], test=[0.9, 0.95, 0.9])
        # lr 0.1 has the best validation score on seed 1 but diverged on seed 2: it is ruled out.
        status = "diverged" if seed == 2 else "completed"
        _fake_run(tune, "sgd", 0.1, seed, val=[0.99, 0.99, 0.99], test=[0.99] * 3, status=status)
    sel = tuning.select_study(tmp_path / "study")
    m = sel["methods"]["sgd"]
    assert m["selected"] == {"lr": 0.001} and m["score"] == pytest.approx(0.9)
    assert m["edge"] == "lr" and m["trials"] == 6
    assert sel["axes"] == {"lr": [0.001, 0.01, 0.1]} and sel["tuning_seeds"] == [1, 2]
    assert "validation accuracy" in sel["criterion"] and "never read" in sel["criterion"]
    table = pd.read_csv(tmp_path / "study" / "trials.csv")
    assert math.isnan(table.loc[table["lr"] == 0.1, "score"].iloc[0])
    assert table.loc[table["lr"] == 0.01, "score"].iloc[0] == pytest.approx(0.7)
    # Swapping the splits swaps the winner: the criterion reads validation rows only.
    for p in tune.rglob("epochs.csv"):
        ep = pd.read_csv(p)
        ep["split"] = ep["split"].map({"val": "test", "test": "val"})
        ep.to_csv(p, index=False)
    assert tuning.select_study(tmp_path / "study")["methods"]["sgd"]["selected"] == {"lr": 0.01}


def test_a_trial_with_a_cut_log_is_left_out_of_the_selection(tmp_path: Path) -> None:
    tune = tmp_path / "study" / "tuning"
    for seed in (1, 2):
        _fake_run(tune, "sgd", 0.001, seed, val=[0.5, 0.9, 0.8], test=[0.5, 0.6, 0.6])
        _fake_run(tune, "sgd", 0.01, seed, val=[0.5, 0.7, 0.7], test=[0.9, 0.95, 0.9])
    assert tuning.select_study(tmp_path / "study")["methods"]["sgd"]["selected"] == {"lr": 0.001}
    # lr 0.001's seed-2 trial says completed but its steps.csv ends in half a row: it is not a whole trial.
    (cut,) = [p for p in tune.rglob("steps.csv") if "seed2-" in p.parent.name and "0.001" in _lr_of(p)]
    text = cut.read_text()
    cut.write_text(text[: text.rindex(",", 0, len(text) - 3)])
    sel = tuning.select_study(tmp_path / "study")
    assert sel["methods"]["sgd"]["selected"] == {"lr": 0.01}
    table = pd.read_csv(tmp_path / "study" / "trials.csv")
    assert math.isnan(table.loc[table["lr"] == 0.001, "score"].iloc[0])
    assert "2:nan" in table.loc[table["lr"] == 0.001, "per_seed"].iloc[0]
    runs = tuning.load([tune]).set_index("path")
    (status,) = runs.loc[str(cut.parent.resolve()), ["status"]]
    assert status.startswith("left out: ") and "steps.csv" in status


def _lr_of(steps_csv: Path) -> str:
    return repr(yaml.safe_load((steps_csv.parent / "config.yaml").read_text())["hparams"]["lr"])


def test_held_out_seeds_must_not_have_been_used_for_tuning(tmp_path: Path) -> None:
    sel = {"tuning_seeds": [1, 10], "methods": {}, "axes": {"lr": [0.1]}}
    with pytest.raises(tuning.TuningError, match=r"held-out seeds \[10\] were used for tuning"):
        tune_cli.heldout_configs(sel, tmp_path)
    assert tune_cli.main(["select", str(tmp_path / "nowhere")]) == 2


def _write_run(out: Path, cfg: dict, loss: np.ndarray, val: list[float], test: list[float]) -> Path:
    """A completed accuracy run of the resolved ``cfg`` in ``out``: ``loss`` per step over len(val) epochs."""
    cfg = {**cfg, "out": str(out)}
    w = RunWriter(run_path(out, cfg))
    w.start(cfg, {"metric": "accuracy", "metric_scale": 1.0}, resume_rows=(0, 0))
    n, per = len(loss), len(loss) // len(val)
    w.append_steps(
        {
            "step": list(range(n)),
            "epoch": [i // per for i in range(n)],
            "base_loss": list(loss),
            "train_loss": list(loss),
            "lr": [cfg["hparams"]["lr"]] * n,
            "grad_norm": [1.0] * n,
            "time_s": [0.1 * (i + 1) for i in range(n)],
        }
    )
    rows: dict[str, list] = {"epoch": [], "split": [], "loss": [], "accuracy": []}
    for e, (v, t) in enumerate(zip(val, test, strict=True)):
        for split, acc in (("val", v), ("test", t)):
            rows["epoch"] += [e]
            rows["split"] += [split]
            rows["loss"] += [1.0 - acc]
            rows["accuracy"] += [acc]
    w.append_epochs(rows)
    w.write_info(status="completed", steps=n)
    return w.path


def test_a_custom_optimizer_is_selected_rerun_and_reported_like_a_built_in_one(tmp_path: Path) -> None:
    """A user's optimizer (as optimizer=custom stores it: its name, family and class path) in a study:
    selected on validation, re-composed for the held-out runs, saved against its family baseline, in
    Table 1 against the better baseline, and labelled by its name after the built-in methods."""
    study = tmp_path / "study"
    base = resolve(compose(["optimizer=adam", "task.val_fraction=0.2", "log.window=20", "seed=1"])).to_dict()
    custom = {**base, "optimizer": "adamax", "optimizer_target": "torch.optim.Adamax", "optimizer_kwargs": {}}
    t = np.arange(400)
    for cfg, tau in ((base, 80.0), (custom, 50.0)):
        for lr in (0.001, 0.01):
            for seed in (1, 2):
                good = lr == (0.01 if cfg is custom else 0.001)
                val = [0.5, 0.9 if good else 0.7, 0.8, 0.8]
                trial = {**cfg, "seed": seed, "hparams": {**cfg["hparams"], "lr": lr}}
                _write_run(study / "tuning", trial, np.exp(-t / tau), val, [0.5] * 4)
    sel = tuning.select_study(study)
    assert list(sel["methods"]) == ["adam", "adamax"]  # the user's method after the built-in ones
    m = sel["methods"]["adamax"]
    assert (m["optimizer"], m["family"], m["selected"]) == ("adamax", "adam", {"lr": 0.01})
    o = tune_cli.overrides_for({**m["config"], "seed": 10})
    assert {"optimizer=custom", "optimizer.target='torch.optim.Adamax'", "optimizer.family=adam"} <= set(o)
    assert not any(x.startswith(("gamma=", "optimizer=adamax")) for x in o)
    assert "optimizer.kwargs={betas:[0.9,0.99]}" in tune_cli.overrides_for(
        {**m["config"], "seed": 10, "optimizer_kwargs": {"betas": [0.9, 0.99]}}
    )
    # The held-out runs (as rerun trains them): the custom method saves steps against Adam in both arms.
    # Adam's selected lr is the preset's, so its two arms share one run, named twice in the manifest.
    assert sel["methods"]["adam"]["selected"]["lr"] == base["hparams"]["lr"]
    rng = np.random.default_rng(0)
    runs = []
    for arm in tuning.ARMS:
        for method, cfg, tau, acc in (("adam", base, 80.0, 0.80), ("adamax", custom, 50.0, 0.85)):
            lr = sel["methods"][method]["selected"]["lr"] if arm == "tuned" else cfg["hparams"]["lr"]
            for seed in (10, 20, 30):
                run = {**cfg, "seed": seed, "hparams": {**cfg["hparams"], "lr": lr}}
                loss = np.exp(-t / (tau * (1 + 0.05 * rng.standard_normal()))) + 0.01
                best = acc + 0.01 * rng.random()
                path = _write_run(
                    study / "heldout", run, loss, [0.5, best, best, best], [0.5, best, best, best]
                )
                rel = str(path.relative_to(study / "heldout"))
                runs.append(
                    {"arm": arm, "method": method, "seed": seed, "path": rel, "hparams": run["hparams"]}
                )
    (study / "heldout.json").write_text(json.dumps({"seeds": [10, 20, 30], "runs": runs}))
    out = tmp_path / "report"
    files = tuning.report_study(study, out)
    assert out / "report.md" in files and (out / "sensitivity.png").stat().st_size > 1000
    sav = pd.read_csv(out / "savings.csv")
    assert set(sav["method"]) == {"adamax"} and set(sav["arm"]) == {"tuned", "untuned"}
    held = tuning.heldout_frame(study)
    done = held[(held["arm"] == "untuned") & (held["status"] == "completed")]
    curves = {
        mm: {int(s): tuning.curve_of(p) for s, p in zip(g["seed"], g["path"], strict=True)}
        for mm, g in done.groupby("method")
    }
    want = M.per_seed_saving(curves["adam"], curves["adamax"], 0.95, 20).summary.mean
    row = sav[(sav["arm"] == "untuned") & (sav["reduction"] == 0.95)].iloc[0]
    assert row["mean"] == pytest.approx(want) and want > 10
    t1 = pd.read_csv(out / "table1.csv", keep_default_na=False)
    assert set(t1.loc[t1["method"] == "adamax", "reference"]) == {"adam"}
    assert (t1.loc[t1["method"] == "adamax", "n_pairs"] == 3).all()
    text = (out / "report.md").read_text()
    assert "| adamax |" in text and "Adam family, target validation accuracy" in text
    # the same outputs as any report: HTML, LaTeX and CSV of every table
    assert text.index("## Step savings") < text.index("## Tuning budget and protocol")
    assert '<details id="tuning-budget-and-protocol">' in (out / "report.html").read_text()
    assert {"savings.tex", "table1.tex", "selection.csv", "time_to_target.md"} <= {f.name for f in files}


# -- the whole workflow on a small digits study ---------------------------------------------------------

SMALL = ["task=digits", "task.val_fraction=0.2", "epochs=4", "log.window=10", "progress=none", "device=cpu"]


@pytest.mark.slow
def test_tune_select_rerun_report_on_a_small_digits_study(tmp_path: Path) -> None:
    study = tmp_path / "study"
    cfgs = [
        compose([*SMALL, f"+method={m}", f"lr={lr}", f"seed={s}", f"out={study / 'tuning'}"])
        for m in ("sgd", "sgd_os_g3")
        for lr in (0.01, 0.1)
        for s in (1, 2)
    ]
    assert run_sweep(cfgs) == [0] * 8  # composed outside Hydra's runtime, trained as populations
    sel = tuning.select_study(study)
    assert set(sel["methods"]) == {"sgd", "sgd_os-g3"} and sel["same_budget"]
    assert tune_cli.main(["rerun", str(study), "--seeds", "10,20", "--set", "threads=1"]) == 0
    held = json.loads((study / "heldout.json").read_text())["runs"]
    assert {(r["arm"], r["method"], r["seed"]) for r in held} == {
        (a, m, s) for a in ("tuned", "untuned") for m in ("sgd", "sgd_os-g3") for s in (10, 20)
    }
    for r in held:
        run = results.read_run(study / "heldout" / r["path"])
        assert run.status == "completed" and run.config["seed"] in (10, 20)
        assert run.config["task_options"]["val_fraction"] == 0.2 and run.config["hparams"]["epochs"] == 4
        want = sel["methods"][r["method"]]["selected"]["lr"] if r["arm"] == "tuned" else 0.03  # digits preset
        assert run.config["hparams"]["lr"] == want
    # Resumable: a second rerun trains nothing.
    assert tune_cli.main(["rerun", str(study), "--seeds", "10,20"]) == 0
    out = tmp_path / "report"
    assert tune_cli.main(["report", str(study), "--out", str(out), "--command", "echo demo"]) == 0
    text = (out / "report.md").read_text()
    for part in ("Tuning budget", "trials per method | 4", "held-out seeds | 10, 20", "Selected settings"):
        assert part in text
    for part in ("90% loss reduction", "99% loss reduction", "Table 1", "Time to a validation target"):
        assert part in text
    assert "echo demo" in text and (out / "sensitivity.png").stat().st_size > 1000
    sav = pd.read_csv(out / "savings.csv")
    assert set(sav["arm"]) == {"tuned", "untuned"} and set(sav["reduction"]) == {0.9, 0.95, 0.99}
    assert set(sav["method"]) == {"sgd_os-g3"}
    ttt = pd.read_csv(out / "time_to_target.csv")
    assert set(ttt["arm"]) == {"tuned", "untuned"} and (ttt["n"] == 2).all()
    base = ttt[(ttt["arm"] == "untuned") & (ttt["method"] == "sgd")].iloc[0]
    assert base["reached"] >= 1  # the target is this baseline's median best validation accuracy
    t1 = pd.read_csv(out / "table1.csv")
    assert set(t1["arm"]) == {"tuned", "untuned"} and (t1["n"] == 2).all()


# -- the new metrics ------------------------------------------------------------------------------------


def test_bootstrap_interval_against_hand_computed_values() -> None:
    # Two seeds: the resampled means are 1 (p 1/4), 2 (p 1/2) and 3 (p 1/4), so the 2.5 % and 97.5 %
    # percentiles are the two values themselves.
    assert M.bootstrap_interval([1.0, 3.0]) == (1.0, 3.0)
    assert M.bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert all(math.isnan(x) for x in M.bootstrap_interval([5.0]))
    assert M.bootstrap_interval([1.0, None, 3.0, float("nan")]) == (1.0, 3.0)
    lo, hi = M.bootstrap_interval(list(range(10)), seed=1)
    assert 2.0 < lo < 4.5 < hi < 7.0 and M.bootstrap_interval(list(range(10)), seed=1) == (lo, hi)
    assert M.contains_zero(-1.0, 2.0) and not M.contains_zero(0.5, 2.0) and M.contains_zero(math.nan, 1.0)


def test_time_to_target_counts_misses_as_censored() -> None:
    steps = [100, 200, 300]
    assert M.steps_to_target([0.5, 0.8, 0.9], steps, 0.8, higher_is_better=True) == 200
    assert M.steps_to_target([2.0, 1.0, 0.4], steps, 0.5, higher_is_better=False) == 300
    assert M.steps_to_target([2.0, math.nan, 0.6], steps, 0.5, higher_is_better=False) is None
    with pytest.raises(ValueError, match="one step per evaluation"):
        M.steps_to_target([1.0], steps, 0.5, higher_is_better=False)
    # Sorted with misses last: 100, 200, 300, inf -> median (200 + 300) / 2; mean over the three hits.
    s = M.time_to_target_summary([300, None, 100, 200])
    assert (s.n, s.reached, s.median, s.median_reached, s.mean_reached) == (4, 3, 250.0, 200.0, 200.0)
    s = M.time_to_target_summary([100, None, None, 200])  # the median is a miss
    assert (s.reached, s.median, s.median_reached, s.mean_reached) == (2, None, 150.0, 150.0)
    s = M.time_to_target_summary([None, None])
    assert (s.n, s.reached, s.median, s.mean_reached) == (2, 0, None, None)


def test_selection_over_two_axes_picks_the_best_pair_and_flags_the_grid_edge() -> None:
    rows = []
    for lr in (0.01, 0.1):
        for mu in (0.85, 0.9, 0.95):
            for seed in (1, 2):
                loss = abs(lr - 0.01) + abs(mu - 0.9) + 0.001 * seed  # best at lr 0.01 (grid edge), mu 0.9
                rows.append(
                    {
                        "method": "sgd",
                        "optimizer": "sgd",
                        "gamma": 0.0,
                        "family": "sgd",
                        "seed": seed,
                        "status": "completed",
                        "setting": f"{lr}/{mu}",
                        "lr": lr,
                        "momentum": mu,
                        "val_metric": loss,
                        "val_loss": loss,
                        "metric": "loss",
                        "path": "",
                    }
                )
    table, sel = tuning.select(pd.DataFrame(rows), {"lr": [0.01, 0.1], "momentum": [0.85, 0.9, 0.95]})
    assert len(table) == 6 and (table["seeds"] == 2).all()
    best = sel.iloc[0]
    assert (best["lr"], best["momentum"], best["edge"], best["trials"]) == (0.01, 0.9, "lr", 12)
    assert best["score"] == pytest.approx(0.0015)


def test_tune_cli_names_its_commands_and_helps_every_argument(capsys: pytest.CaptureFixture) -> None:
    assert tune_cli.main([]) == 2  # a bare call: the usage with the commands, not "required: cmd"
    err = capsys.readouterr().err
    assert "select" in err and "rerun" in err and "report" in err and "required" not in err
    for cmd in ("select", "rerun", "report"):
        with pytest.raises(SystemExit):
            tune_cli.main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "the study directory" in out and "--help" in out
