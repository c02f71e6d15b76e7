"""Sweep dispatch: what each job of a Hydra multirun trains, populations of compatible runs, and the
sweep's closing saving lines.

A ``Session`` holds one ``overshoot-bench`` process's state: its outcomes, the population jobs it collects
while Hydra runs the sweep (trained together once Hydra returns), its notes and the runs it summarises.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from overshoot.config.compose import ConfigError, baseline_of, drop_sweep_gamma, resolve
from overshoot.config.outcomes import Outcomes, bad_input, run_label
from overshoot.config.run import RunConfig
from overshoot.store.claim import CLAIM_FILE
from overshoot.store.writer import run_path

# Training (lifecycle, population) imports torch and the store's reader numpy: a job that ends in bad input
# never imports either, one that skips a finished run only numpy.


class Session:
    """One process's sweep: ``job(cfg)`` for each Hydra job, ``finish()`` once Hydra returns."""

    def __init__(self) -> None:
        self.outcomes = Outcomes()
        self.population_jobs: list[RunConfig] = []
        self.runs: list[RunConfig] = []  # the resolved runs of this process's sweep jobs, for the summary
        self.notes: set[str] = set()

    def note(self, text: str) -> None:
        """Print ``text`` as a note, once per process."""
        if text not in self.notes:
            self.notes.add(text)
            print(f"overshoot-bench: note: {text}", flush=True)

    def job(self, cfg: DictConfig) -> None:
        """What one Hydra job does: train its run, or skip it as another job's copy, or keep it for a
        population. Its config is resolved once, here. Raises KeyboardInterrupt when the run was interrupted
        (the sweep stops; it resumes)."""
        multirun = _multirun()
        why = drop_sweep_gamma(cfg) if multirun else None
        try:
            run = resolve(cfg)
        except (ConfigError, ValueError) as e:  # bad input: its one line, exit code 2
            self.outcomes.codes.append(bad_input(e, self.outcomes))
            return
        if multirun and self._sweep_copy(cfg, run, why):
            return
        if _population_job(cfg):
            self.population_jobs.append(run)  # trained after the sweep, grouped
            return
        if self._finished(run):
            return
        from overshoot.train.lifecycle import run_one

        code = run_one(run, self.outcomes)
        if code in (130, 143):
            raise KeyboardInterrupt

    def _finished(self, run: RunConfig) -> bool:
        """Whether the job ends here without torch: the store holds ``run`` finished with nothing of an
        earlier process left beside it (skipped with the line training's own check prints; a leftover claim
        or checkpoint is left to training's check, which clears it)."""
        path = run_path(run.out, run)
        if (path / CLAIM_FILE).exists() or (path / "checkpoint.pt").exists():
            return False
        from overshoot.analysis import results

        verdict = results.read_run(path)
        if not verdict.finished:
            return False
        print(f"{run_label(run)}: skipped, already {verdict.status} in {path}", flush=True)
        self.outcomes.add("skipped")
        self.outcomes.codes.append(0)
        return True

    def finish(self) -> None:
        """Train the population jobs collected during the sweep."""
        if self.population_jobs:
            run_sweep(self.population_jobs, self.outcomes)

    def _sweep_copy(self, cfg: DictConfig, run: RunConfig, why: str | None) -> bool:
        """Whether this sweep job's run (``run``, resolved from ``cfg``; ``why``: the note of a gamma
        dropped from it) is trained by another job of the same sweep (then one note is printed). A baseline
        given a gamma (``-m optimizer=sgd,sgd_os gamma=3,5,7``) is the baseline's own run; of the jobs that
        resolve to one run directory, the first to claim it trains it."""
        from hydra.core.hydra_config import HydraConfig

        given_name = str(cfg.optimizer.get("name"))
        custom = cfg.optimizer.get("target") is not None or cfg.optimizer.get("_target_") is not None
        if why is None and given_name != run.optimizer and not custom:
            why = f"{given_name} at gamma 0 is {run.optimizer}"
            self.note(f"{why}: its gamma=0 runs are {run.optimizer} runs")
        hc = HydraConfig.get()
        me = int(hc.job.num)
        owner = sweep_job_of(Path(hc.sweep.dir), run, me)
        if owner == me:
            self.runs.append(run)
            return False
        given = f" (gamma={cfg.get('gamma')})" if cfg.get("gamma") is not None else ""
        print(
            f"{run_label(run)}{given}: skipped, the same run as job {owner} of this sweep"
            + (f": {why}" if why else "")
            + "; it trains once",
            flush=True,
        )
        self.outcomes.add("copy skipped")
        return True

    def summary(self) -> list[str]:
        """The closing lines: the outcome counts, then the sweep's savings and report command."""
        line = self.outcomes.summary()
        return ([line] if line else []) + sweep_summary(self.runs)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _population_job(cfg: DictConfig) -> bool:
    """Whether ``cfg`` is a job of a local multirun with ``population=true`` (SLURM jobs run one by one)."""
    if not cfg.get("population"):
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and str(hc.launcher.get("_target_", "")).endswith(".BasicLauncher")


def sweep_job_of(sweep_dir: Path, run: RunConfig, job: int) -> int:
    """The number of the sweep job that trains ``run``: the first job to claim its run directory in
    ``sweep_dir`` (atomic on a shared file system, so SLURM jobs agree); a requeued job finds its claim."""
    claims = Path(sweep_dir) / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(run_path(run.out, run).resolve()).encode()).hexdigest()[:20]
    fd, tmp = tempfile.mkstemp(dir=claims, prefix=f".{key}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(str(job))
        try:
            os.link(tmp, claims / key)  # fails when another job claimed it first
            return job
        except FileExistsError:
            return int((claims / key).read_text().strip())
    finally:
        os.unlink(tmp)


def run_sweep(
    cfgs: Sequence[DictConfig | RunConfig], outcomes: Outcomes | None = None, max_size: int | None = None
) -> list[int]:
    """Train the runs of a sweep, given as composed configs or resolved runs: completed runs skipped,
    compatible ones as populations, the rest one by one; returns the exit codes. Raises KeyboardInterrupt
    when a population was interrupted."""
    from overshoot.analysis import results
    from overshoot.train.lifecycle import run_one, run_population
    from overshoot.train.population import MAX_SIZE, eligible, plan_populations

    outcomes = outcomes if outcomes is not None else Outcomes()
    codes: list[int] = []
    todo: list[RunConfig] = []
    for cfg in cfgs:
        try:
            run = cfg if isinstance(cfg, RunConfig) else resolve(cfg)
        except ConfigError:
            codes.append(run_one(cfg, outcomes))  # reports the error
            continue
        if results.read_run(run_path(run.out, run)).finished:
            codes.append(run_one(run, outcomes))  # says it skipped
            continue
        todo.append(run)
    populations, alone = plan_populations(todo, max_size=MAX_SIZE if max_size is None else max_size)
    print(
        f"population mode: {sum(map(len, populations))} runs in {len(populations)} populations, "
        f"{len(alone)} alone",
        flush=True,
    )
    why_alone = Counter(
        eligible(r) or "no other run of the sweep shares its task, family and settings" for r in alone
    )
    for why, k in why_alone.items():
        print(f"  {k} alone: {why}", flush=True)
    for members in populations:
        member_codes = run_population(members, outcomes)
        codes.extend(member_codes)
        if 130 in member_codes or 143 in member_codes:
            raise KeyboardInterrupt
    for run in alone:
        codes.append(run_one(run, outcomes))
        if codes[-1] in (130, 143):
            raise KeyboardInterrupt
    return codes


def sweep_summary(runs: list[RunConfig]) -> list[str]:
    """The closing lines of a sweep: per method with a baseline in the store, its step saving paired by seed
    over the usable runs of ``runs`` and their baselines' (mean, 95% t-interval and window, from
    :func:`overshoot.analysis.savings.saving_summary`), then the report command to run."""
    if not runs:
        return []
    from overshoot.analysis import results, savings
    from overshoot.config import methods

    lines: list[str] = []
    records: dict[Path, results.RunRecord] = {}
    window = runs[0].log.window
    for r in runs:
        if methods.get(r.optimizer, r.family).is_baseline:
            continue
        base = baseline_of(r)
        pair = [results.read_run(run_path(x.out, x)) for x in (base, r)]
        if all(p.usable for p in pair):
            records.update({p.path: p.record for p in pair if p.record is not None})
    summary = savings.saving_summary(list(records.values()), 0.95, window)
    several = summary.groupby(["task", "method"])["protocol"].transform("nunique") > 1
    for (_, row), multi in zip(summary.iterrows(), several, strict=True):
        where = f" [protocol {row['protocol']}]" if multi else ""
        lines.append(
            f"{row['task']} {row['method']} vs {row['baseline']}{where}: {savings.summary_text(row)}"
        )
    stores = sorted({str(Path(r.out) / r.task) for r in runs})
    lines.append(f"report: overshoot-bench-report {' '.join(stores)}")
    return lines
