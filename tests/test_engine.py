"""The training driver: the closed-form lr schedule, the checkpoint's lr, the training clock (steps.csv's
time_s, run.json's optimizer_step_s) and resume."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import overshoot.train.lifecycle as lifecycle
from overshoot.analysis import results
from overshoot.config.compose import compose, resolve
from overshoot.config.run import HParams
from overshoot.store.writer import run_path
from overshoot.train.lifecycle import run_one, run_population
from overshoot.train.runtime import StopRequest, lr_at

HP = HParams(
    epochs=4, batch_size=16, lr=0.05, momentum=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
    schedule="constant", delay=0,
)  # fmt: skip


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    """A housing run of 3 epochs (15 steps each with the fixture's 240 training rows), fp64, one thread."""
    return [
        "task=housing", "precision=fp64", "device=cpu", "threads=1", "batch_size=16", "epochs=3",
        "progress=none", "checkpoint_every=1e9", f"data.root={root}", f"out={out}", *extra,
    ]  # fmt: skip


def _stop_after(n_checks: int):  # type: ignore[no-untyped-def]
    """A stand-in for ``stop_requests`` whose flag turns true (as after SIGTERM) at the n-th check."""

    class Flag(StopRequest):
        calls = 0

        def __call__(self) -> bool:
            self.calls += 1
            if self.calls > n_checks:
                self.signum = signal.SIGTERM
            return super().__call__()

    @contextlib.contextmanager
    def requests() -> Iterator[StopRequest]:
        yield Flag()

    return requests


# -- the lr schedule -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_lr_at_is_torchs_schedule_over_a_whole_run(schedule: str) -> None:
    """Every step's lr equals torch's scheduler's: bit for bit its closed form (and, for a constant lr, the
    scheduler's own sequence); within rounding of the recursive sequence CosineAnnealingLR steps through."""
    total = 1000
    hp = dataclasses.replace(HP, schedule=schedule)
    opt = torch.optim.SGD([torch.zeros(1)], lr=hp.lr)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        if schedule == "cosine"
        else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)
    )
    stepped, closed = [], []
    for k in range(total):
        stepped.append(opt.param_groups[0]["lr"])
        if schedule == "cosine":
            sched.last_epoch = k
            closed.append(sched._get_closed_form_lr()[0])  # type: ignore[attr-defined]
            sched.last_epoch = k
        opt.step()
        sched.step()
    ours = [lr_at(k, hp, total) for k in range(total)]
    assert all(isinstance(v, float) for v in ours)
    if schedule == "constant":
        assert ours == stepped == [hp.lr] * total
    else:
        assert ours == closed
        assert ours[0] == hp.lr and lr_at(total, hp, total) == 0.0
        np.testing.assert_allclose(ours, stepped, rtol=1e-14, atol=0)


def test_lr_at_refuses_an_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="schedule=linear is unknown"):
        lr_at(0, dataclasses.replace(HP, schedule="linear"), 10)


@pytest.mark.parametrize("population", [False, True], ids=["single", "population"])
def test_both_backends_log_lr_at(root: Path, tmp_path: Path, population: bool) -> None:
    """The lr of every logged step is lr_at's, in a single run and in each member of a population."""
    args = _args(root, tmp_path, "schedule=cosine", "lr=0.01")
    runs = [resolve(compose([*args, m, "seed=1"])) for m in ("optimizer=sgd", "+method=sgd_os_g3")]
    if population:
        assert run_population(runs) == [0, 0]
    else:
        assert run_one(runs[1]) == 0
        runs = runs[1:]
    for r in runs:
        lrs = results.read_run(run_path(r.out, r)).steps()["lr"].tolist()
        assert len(lrs) == 45 and lrs == [lr_at(k, r.hparams, 45) for k in range(45)]


# -- the checkpoint's lr and resume --------------------------------------------------------------------------
@pytest.mark.parametrize("old", [False, True], ids=["new", "old-checkpoint"])
def test_resume_continues_the_schedule_from_a_checkpoint_new_or_old(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: bool
) -> None:
    """A checkpoint holds no scheduler state and no lr of its own (the lr is the schedule's at its step;
    the optimizer's state keeps the one torch saves); one written before, with both, resumes the same."""
    args = ["schedule=cosine", "+method=sgd_os_g3", "seed=3"]
    assert run_one(compose(_args(root, tmp_path / "whole", *args))) == 0
    cut = compose(_args(root, tmp_path / "cut", *args))
    monkeypatch.setattr(lifecycle, "stop_requests", _stop_after(20))
    assert run_one(cut) == 143
    monkeypatch.undo()
    run = resolve(cut)
    path = run_path(run.out, run) / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=False)
    assert "scheduler" not in ckpt and "lr" not in ckpt
    step = ckpt["step"]
    assert 0 < step < 45
    if old:  # as the driver wrote them with a torch scheduler: its state and the next step's lr
        opt = torch.optim.SGD([torch.zeros(1)], lr=run.hparams.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=45)
        for _ in range(step):
            opt.step()
            sched.step()
        ckpt["scheduler"], ckpt["lr"] = sched.state_dict(), opt.param_groups[0]["lr"]
        torch.save(ckpt, path)
    assert run_one(cut) == 0
    whole = results.read_run(run_path(tmp_path / "whole", run)).steps()
    again = results.read_run(run_path(run.out, run)).steps()
    timeless = [c for c in whole.columns if c != "time_s"]
    assert len(again) == 45
    assert again[timeless].equals(whole[timeless])


# -- the training clock --------------------------------------------------------------------------------------
def _slowed(cls: type, name: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``cls.name`` take ``seconds`` longer."""
    inner = getattr(cls, name)

    def slow(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(seconds)
        return inner(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, slow)


@pytest.mark.parametrize("population", [False, True], ids=["single", "population"])
@pytest.mark.parametrize("slowed", ["measure+evaluate", "backward"])
def test_time_leaves_out_the_base_loss_and_evaluation(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, population: bool, slowed: str
) -> None:
    """steps.csv's time_s grows with every step; a slow base-loss forward or evaluation does not show in it,
    a slow training step does (in a population, every member has the population's time)."""
    from overshoot.train.population import PopulationBackend
    from overshoot.train.single import SingleBackend

    cls = PopulationBackend if population else SingleBackend
    if slowed == "backward":
        _slowed(cls, "backward", 0.05, monkeypatch)
    else:
        _slowed(cls, "measure", 0.25, monkeypatch)
        _slowed(cls, "evaluate", 0.5, monkeypatch)
    args = _args(root, tmp_path, "epochs=2")
    runs = [resolve(compose([*args, m, "seed=1"])) for m in ("optimizer=sgd", "+method=sgd_os_g3")]
    if population:
        assert run_population(runs) == [0, 0]
    else:
        assert run_one(runs[1]) == 0
        runs = runs[1:]
    times = [results.read_run(run_path(r.out, r)).steps()["time_s"].to_numpy() for r in runs]
    for t in times:
        assert len(t) == 30 and t[0] > 0 and (np.diff(t) > 0).all()
        np.testing.assert_array_equal(t, times[0])
        if slowed == "backward":
            assert np.diff(t).min() >= 0.05
        else:
            assert np.diff(t).max() < 0.25 and t[-1] < 30 * 0.25
    info = results.read_run(run_path(runs[0].out, runs[0])).info
    assert info["optimizer_steps_timed"] == 3 and 0 < info["optimizer_step_s"] < 0.05


def test_a_resumed_run_continues_its_time(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock goes on from the checkpoint's time: time_s increases across the resume."""
    cut = compose(_args(root, tmp_path, "+method=sgd_os_g3", "seed=3"))
    monkeypatch.setattr(lifecycle, "stop_requests", _stop_after(20))
    assert run_one(cut) == 143
    monkeypatch.undo()
    run = resolve(cut)
    ckpt = torch.load(run_path(run.out, run) / "checkpoint.pt", weights_only=False)
    assert run_one(cut) == 0
    t = results.read_run(run_path(run.out, run)).steps()["time_s"].to_numpy()
    assert len(t) == 45 and (np.diff(t) > 0).all()
    assert t[ckpt["step"] - 1] == ckpt["time_s"]


def test_a_run_begun_before_the_clock_resumes_untimed(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose steps.csv has no time_s (begun by an earlier version) resumes from its checkpoint and
    goes on without the column; the reader reads it."""
    from overshoot.config.schema import UNTIMED_STEP_COLUMNS

    cut = compose(_args(root, tmp_path, "+method=sgd_os_g3", "seed=3"))
    monkeypatch.setattr(lifecycle, "stop_requests", _stop_after(20))
    assert run_one(cut) == 143
    monkeypatch.undo()
    run = resolve(cut)
    folder = run_path(run.out, run)
    lines = (folder / "steps.csv").read_text().splitlines()
    old = [",".join(UNTIMED_STEP_COLUMNS)] + [",".join(x.split(",")[:-1]) for x in lines[1:]]
    (folder / "steps.csv").write_text("\n".join(old) + "\n")
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=False)
    del ckpt["time_s"]
    ckpt["log_tails"][0][0] = old[-1]
    torch.save(ckpt, folder / "checkpoint.pt")
    assert run_one(cut) == 0
    steps = results.read_run(folder).steps()
    assert list(steps.columns) == list(UNTIMED_STEP_COLUMNS) and len(steps) == 45
    assert steps["step"].tolist() == list(range(45))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_step_clock_arithmetic(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock's sums from its marks, with CUDA's marks as events (a stand-in that reads the host clock
    where no GPU is): excluded spans and the gaps between blocks are left out, the optimizer samples are
    read at the flush, and a run of blocks reuses its events."""
    from overshoot.train.engine import StepClock

    created: list[object] = []

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            assert enable_timing
            created.append(self)

        def record(self, stream: object = None) -> None:
            self.t = time.perf_counter()

        def elapsed_time(self, end: Event) -> float:
            return (end.t - self.t) * 1000.0

        def synchronize(self) -> None:
            pass

    if device == "cuda":
        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    clock = StepClock(torch.device(device), start_s=10.0)
    ends = []
    for _ in range(3):
        clock.begin()
        for i in range(2):
            with clock.excluded():
                time.sleep(0.05)  # measured only
            time.sleep(0.01)  # trained
            with clock.optimizer(sample=i == 1):
                time.sleep(0.005)
            clock.step_done()
        ends += clock.flush()
        time.sleep(0.05)  # evaluation, checkpoints: between blocks
    steps = np.diff([10.0, *ends])
    assert len(ends) == 6 and (steps >= 0.015).all() and (steps < 0.045).all(), steps
    assert clock.elapsed == ends[-1] and len(clock.optimizer_s) == 3
    assert all(0.005 <= s < 0.03 for s in clock.optimizer_s)
    if device == "cuda":
        assert (
            len(created) == 9
        )  # one block's: its start, per step 2 around the excluded part and its end, 2 sampled
