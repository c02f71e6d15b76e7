"""List a sweep's runs and their state without running anything; write the manifest of those still to do.

    overshoot-bench-manifest +sweep=paper task=cifar              # 100 runs: name, state, summary
    overshoot-bench-manifest +sweep=paper_all --summary           # counts only (700 runs)
    overshoot-bench-manifest -o todo.txt optimizer=sgd_os gamma=3,5,7 seed=10,20

The overrides are those of ``overshoot-bench -m``: the sweep is expanded exactly as Hydra's basic sweeper
expands it (``hydra.sweeper.params`` of the composed config, then the command line). Each run's state comes
from its ``run.json`` in the run store, the only truth about it:

- to do: ``missing`` (never started), ``failed`` (crashed, or interrupted by a signal), ``interrupted``
  (``running`` but its process is gone: its claim's heartbeat is stale or its pid dead on this host, or,
  for a run without a claim, no run.json heartbeat for ``--stale-after`` seconds; e.g. killed by SIGKILL
  or a SLURM time limit), ``damaged`` (a store file that breaks its schema, an edited config, a finished
  run's cut or non-finite log: see :func:`overshoot.analysis.results.read_run`; the run trains again from step
  0), ``unknown`` (a status this version does not know);
- skipped: ``completed``, ``diverged`` (a result, not an error), ``running`` (alive elsewhere).

A manifest line is one run's overrides, shell-quoted: ``overshoot-bench <line>`` runs (or resumes) it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TODO_STATES = ("missing", "failed", "interrupted", "damaged", "unknown")
SKIP_STATES = ("completed", "diverged", "running")
STALE_AFTER_S = 900.0
BASIC_SWEEPERS = (
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.overshoot_sweeper.overshoot_sweeper.OvershootSweeper",
)


@dataclass(frozen=True)
class Entry:
    """One run of a sweep: its overrides, its name ``task/method/seedN``, its directory and state."""

    overrides: tuple[str, ...]
    name: str
    path: Path
    state: str

    @property
    def todo(self) -> bool:
        return self.state in TODO_STATES

    @property
    def line(self) -> str:
        """The manifest line: the overrides without ``hydra`` settings (they do not change the run)."""
        return shlex.join(o for o in self.overrides if not _is_hydra_override(o))


def _is_hydra_override(o: str) -> bool:
    key = o.lstrip("~+").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _config_dir() -> Path:
    from overshoot.config.compose import CONFIG_DIR

    return Path(CONFIG_DIR)


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """The override lists of the jobs ``overshoot-bench -m <overrides>`` launches, in Hydra's order."""
    groups = _expand_and_compose(overrides, compose=False)
    return [list(job) for job, _ in groups]


def _expand_and_compose(overrides: Sequence[str], compose: bool = True) -> list[tuple[list[str], Any]]:
    """The sweep's jobs, each with its composed config (without the ``hydra`` node) when ``compose``.

    Composing is what Hydra does for a single run: the config-group overrides pick the defaults, then the
    other overrides are applied to the merged config. The first step is done once per distinct set of
    group overrides (10 times for the paper grid of one task, not 100).
    """
    from hydra import initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import DictConfig, open_dict

    with initialize_config_dir(config_dir=str(_config_dir()), version_base=None):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        loader = hydra.config_loader
        cfg = hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN)
        sweeper = cfg.hydra.sweeper
        if sweeper.get("_target_") not in BASIC_SWEEPERS:
            raise ValueError(f"only Hydra's basic sweeper can be listed, not {sweeper.get('_target_')}")
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        parser = OverridesParser.create(config_loader=loader)
        jobs = BasicSweeper.split_arguments(parser.parse_overrides(params + list(overrides)), None)[0]
        if not compose:
            return [(list(job), None) for job in jobs]

        repo = loader.repository  # type: ignore[attr-defined]
        bases: dict[tuple[str, ...], DictConfig] = {}
        out: list[tuple[list[str], Any]] = []
        for job in jobs:
            parsed = parser.parse_overrides([o for o in job if not _is_hydra_override(o)])
            picks = tuple(
                str(o.input_line)
                for o in parsed
                if not isinstance(o.value(), dict) and repo.group_exists(o.key_or_group)
            )
            values = [o for o in parsed if o.input_line not in picks]
            if picks not in bases:
                base = hydra.compose_config("config", list(picks), run_mode=RunMode.RUN, from_shell=False)
                with open_dict(base):
                    del base["hydra"]
                bases[picks] = base
            run_cfg = bases[picks].copy()
            ConfigLoaderImpl._apply_overrides_to_config(values, run_cfg)
            out.append((list(job), run_cfg))
        return out


def run_state(path: Path, stale_after: float = STALE_AFTER_S, now: float | None = None) -> str:
    """The state of the run directory ``path`` (see the module docstring)."""
    from overshoot.analysis import results

    run = results.read_run(path)
    if run.status == "missing":
        return "missing"
    if run.damaged:
        return "damaged"
    status = run.status
    if run.info.get("status") == "running":
        from overshoot.store.claim import DEAD, live_status

        status = live_status(run.info, path, now=now, stale_after=stale_after)
        if status == DEAD:
            return "interrupted"
    return status if status in (*TODO_STATES, *SKIP_STATES) else "unknown"


def plan(overrides: Sequence[str], stale_after: float = STALE_AFTER_S) -> list[Entry]:
    """Every distinct run of the sweep with its state; runs that resolve to the same directory appear once.
    In a sweep that also trains an overshoot method, a gamma given to an optimizer without overshoot
    (``optimizer=sgd,sgd_os gamma=3,5``) is dropped, as ``overshoot-bench -m`` drops it: that job is the
    optimizer's own run, and its line has no gamma."""
    from overshoot.config.compose import drop_sweep_gamma, resolve, takes_gamma
    from overshoot.config.outcomes import run_label
    from overshoot.store.writer import run_path

    entries: dict[Path, Entry] = {}
    jobs = _expand_and_compose(overrides)
    any_gamma = any(takes_gamma(cfg.optimizer) for _, cfg in jobs)  # else gamma is a mistake: refused
    for job, cfg in jobs:
        if any_gamma and drop_sweep_gamma(cfg) is not None:
            job = [o for o in job if o.lstrip("+~").split("=", 1)[0] != "gamma"]
        run = resolve(cfg)
        path = run_path(run.out, run)
        name = run_label(run)
        if path not in entries:
            entries[path] = Entry(tuple(job), name, path, run_state(path, stale_after))
    return list(entries.values())


def summary(entries: Iterable[Entry]) -> str:
    """One line: how many runs, how many to do and skipped, by state."""
    entries = list(entries)
    n = Counter(e.state for e in entries)

    def part(states: Sequence[str]) -> str:
        return ", ".join(f"{s} {n[s]}" for s in states if n[s])

    todo, skip = sum(n[s] for s in TODO_STATES), sum(n[s] for s in SKIP_STATES)
    return (
        f"{len(entries)} runs: {todo} to do ({part(TODO_STATES) or 'none'}), "
        f"{skip} skipped ({part(SKIP_STATES) or 'none'})"
    )


def write_manifest(entries: Iterable[Entry], path: Path) -> int:
    """Write the lines of the runs still to do to ``path`` (atomically); returns how many."""
    from overshoot.common.files import atomic_write_text

    lines = [e.line for e in entries if e.todo]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``overshoot-bench-manifest``; returns the exit status (2 on bad input)."""
    p = argparse.ArgumentParser(
        prog="overshoot-bench-manifest",
        description="List a sweep's runs and their state without running them; write the to-do manifest.",
        epilog="Example: overshoot-bench-manifest +sweep=paper task=cifar",
    )
    p.add_argument("-o", "--output", type=Path, help="write the manifest of the runs still to do here")
    p.add_argument("--summary", action="store_true", help="print only the summary line")
    p.add_argument("--todo", action="store_true", help="list only the runs still to do")
    p.add_argument("--json", action="store_true", help="print the runs as JSON lines")
    p.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_S,
        help=f"seconds without heartbeat before a 'running' run counts as interrupted ({STALE_AFTER_S:g})",
    )
    p.add_argument("overrides", nargs="*", help="overshoot-bench -m overrides, e.g. +sweep=paper task=cifar")
    args = p.parse_args(argv)
    try:
        entries = plan(args.overrides, args.stale_after)
    except ValueError as e:  # includes overshoot.config.compose.ConfigError
        print(f"overshoot-bench-manifest: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # Hydra's errors about unknown groups or bad override syntax
        print(
            f"overshoot-bench-manifest: error: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr
        )
        return 2
    if not args.summary:
        for entry in entries:
            if args.todo and not entry.todo:
                continue
            if args.json:
                row = {"name": entry.name, "state": entry.state, "path": str(entry.path), "line": entry.line}
                print(json.dumps(row))
            else:
                print(f"{entry.name:40s} {entry.state:12s} {entry.line}")
    print(summary(entries), file=sys.stderr if args.json else sys.stdout)
    if args.output:
        n = write_manifest(entries, args.output)
        print(f"wrote {n} runs to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
