"""Fuzz the run store: random corruptions of a small store, read back with ``overshoot.analysis.results.scan``
and resumed with the real lifecycle.

The store holds three completed digits runs of different lengths and two interrupted ones with their
checkpoints. Each case copies it, applies one to three corruptions (a byte of a file replaced by a byte that
breaks its structure, a file cut short, a run.json field given a value of another type, a file or a
checkpoint swapped between two runs) and checks:

* reading the store never raises;
* every damaged run is left out and named (path, file, reason), or read with numbers identical to the
  intact store's (a corruption that touches nothing the results use);
* every intact run is read with numbers identical to the intact store's;
* with ``--resume``, relaunching an interrupted run whose checkpoint was damaged or swapped never resumes
  another run's state: its logs end byte-identical to an uninterrupted run of its own config.

A digit replaced by another digit inside a log cell, or logs swapped between two runs with the same number
of rows, are edits the store cannot tell from data (no digest of the logs is recorded): the cases leave
them out.

    python scripts/bench/fuzz_store.py --cases 300 --resume-every 10 --out results/fuzz
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from overshoot.analysis import results
from overshoot.common.provenance import git_rev, versions
from overshoot.config.compose import compose, resolve
from overshoot.store.writer import RunWriter, run_path, without_time
from overshoot.train import lifecycle
from overshoot.train.runtime import Interrupted, pick_device
from overshoot.train.single import train

COMPLETED = (("sgd", 60), ("sgd_os", 80), ("adam", 100))  # (optimizer, max_steps): logs of three lengths
INTERRUPTED = (("sgd", 90, 40), ("sgd_os", 90, 60))  # (optimizer, max_steps, steps before the stop)
FILES = ("run.json", "config.yaml", "steps.csv", "epochs.csv", "checkpoint.pt")
BREAKING_BYTES = (b"x", b",", b"\n", b"\x00", b"\xff", b"{", b'"')
JSON_FIELDS = (
    "status",
    "steps",
    "steps_to_95",
    "final",
    "versions",
    "started",
    "seed",
    "gamma",
    "metric_scale",
    "wall_time_s",
    "config_hash",
    "task",
    "optimizer",
    "metric",
    "family",
)
JSON_VALUES: tuple[Any, ...] = ("abc", 3, 2.5, [], [1, "x"], {}, {"a": 1}, True, -1, 1e308, "NaN", "")


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def _overrides(out: Path, optimizer: str, steps: int, *extra: str) -> list[str]:
    gamma = ["gamma=5"] if optimizer.endswith("_os") else []
    return [
        f"out={out}",
        f"optimizer={optimizer}",
        *gamma,
        "seed=1",
        f"max_steps={steps}",
        "progress=none",
        "threads=1",
        "checkpoint_every=0",
        *extra,
    ]


def _quiet() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def make_store(root: Path) -> tuple[Path, Path]:
    """The intact store (``root/store``) and uninterrupted references of its interrupted runs
    (``root/ref``)."""
    store, ref = root / "store", root / "ref"
    with _quiet():
        for opt, steps in COMPLETED:
            assert lifecycle.run_one(compose(_overrides(store, opt, steps))) == 0
        for opt, steps, stop_at in INTERRUPTED:
            assert lifecycle.run_one(compose(_overrides(ref, opt, steps))) == 0
            run = resolve(compose(_overrides(store, opt, steps)))
            from overshoot_tasks import build_task

            device = pick_device("cpu")
            task = build_task(run.task_options, Path(run.data_root), device, torch.float32)
            writer = RunWriter(run_path(run.out, run))
            calls = {"n": 0}

            def stop(calls: dict[str, int] = calls, stop_at: int = stop_at) -> bool:
                calls["n"] += 1
                return calls["n"] > stop_at

            writer.info = {"status": "running"}
            with contextlib.suppress(Interrupted):
                train(run, task, writer, device, should_stop=stop)
            writer.write_info(status="failed", reason="interrupted: stopped for the fuzz store")
    return store, ref


def run_dirs(store: Path) -> list[Path]:
    """The store's run directories, relative to it, sorted."""
    return sorted(p.parent.relative_to(store) for p in store.rglob("run.json"))


NUMBER_COLUMNS = ("status", "usable", "steps", "steps_to_95", "seed", "gamma", "method", "task")


def numbers(store: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """What the reader reports per run (relative path -> the numbers results use) and the runs it left out
    (relative path -> file and reason)."""
    scan = results.scan([store])
    table: dict[str, dict[str, Any]] = {}
    for row in scan.table.to_dict("records"):
        rel = str(Path(row["path"]).relative_to(store.resolve()))
        kept = {
            k: v
            for k, v in row.items()
            if k in NUMBER_COLUMNS or k.startswith("final_") or k.startswith("best_")
        }
        table[rel] = {
            k: v for k, v in kept.items() if v is not None and not (isinstance(v, float) and v != v)
        }
    left = {
        str(Path(r["path"]).relative_to(store.resolve())): {"file": r["file"], "reason": r["reason"]}
        for r in scan.left_out.to_dict("records")
    }
    for rel in table:  # a record the reader kept matches its run's logs: check the curve too
        table[rel]["curve"] = None
    for rec in scan.records:
        rel = str(Path(rec.path).relative_to(store.resolve()))
        table[rel]["curve"] = tuple(float(x) for x in rec.base_loss)
    return table, left


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``kind`` flip | cut | json | swap | swap_checkpoint, on run ``a`` (and run ``b``)."""

    kind: str
    a: int
    b: int = 0
    file: str = "run.json"
    where: float = 0.5  # the position in the file, as a fraction of its length
    byte: bytes = b"x"
    field: str = "status"
    value: Any = "abc"

    def describe(self) -> str:
        if self.kind == "flip":
            return f"flip {self.file}@{self.where:.3f}->{self.byte!r} run {self.a}"
        if self.kind == "cut":
            return f"cut {self.file}@{self.where:.3f} run {self.a}"
        if self.kind == "json":
            return f"run.json {self.field}={self.value!r} run {self.a}"
        return f"{self.kind} {self.file} runs {self.a}<->{self.b}"


def apply(store: Path, runs: Sequence[Path], c: Corruption) -> set[Path]:
    """Apply ``c`` to the store; the run directories whose files it changed."""
    a = store / runs[c.a % len(runs)]
    b = store / runs[c.b % len(runs)]
    if c.kind in ("flip", "cut"):
        f = a / c.file
        if not f.exists():
            return set()
        data = bytearray(f.read_bytes())
        if not data:
            return set()
        i = min(int(c.where * len(data)), len(data) - 1)
        if c.kind == "flip":
            if data[i : i + 1] == c.byte:
                return set()
            data[i : i + 1] = c.byte
        else:
            data = data[:i]
        f.write_bytes(bytes(data))
        return {a}
    if c.kind == "json":
        f = a / "run.json"
        try:
            info = json.loads(f.read_text())
        except (ValueError, OSError):
            return set()
        if not isinstance(info, dict) or c.field not in info or _kind(info[c.field]) == _kind(c.value):
            return set()
        info[c.field] = c.value
        f.write_text(json.dumps(info))
        return {a}
    file = "checkpoint.pt" if c.kind == "swap_checkpoint" else c.file
    fa, fb = a / file, b / file
    if a == b or not fa.exists() or not fb.exists() or fa.read_bytes() == fb.read_bytes():
        return set()
    if file in ("steps.csv", "epochs.csv") and _rows(fa) == _rows(fb):
        return set()  # logs of one length swapped: an edit no reader can tell without digests
    tmp = a / f".{file}.swap"
    os.replace(fa, tmp)
    os.replace(fb, fa)
    os.replace(tmp, fb)
    return {a, b}


def _rows(f: Path) -> int:
    return f.read_bytes().count(b"\n")


def check(store: Path, baseline: tuple[dict[str, Any], dict[str, Any]], damaged: set[Path]) -> list[str]:
    """The failures of one corrupted store (empty when it holds)."""
    try:
        table, left = numbers(store)
    except Exception as e:  # the reader raised: a failure, named
        return [f"scan raised {type(e).__name__}: {e}"]
    base_table, base_left = baseline
    failures = []
    for rel, base in base_table.items():
        hit = (store / rel) in damaged
        got = table.get(rel)
        if hit and rel in left and left[rel]["file"] and left[rel]["reason"]:
            continue  # damaged, left out and named
        if got != base:
            changed = sorted(k for k in {*base, *(got or {})} if got is None or got.get(k) != base.get(k))
            what = "damaged run reported with other numbers" if hit else "intact run changed"
            failures.append(f"{rel}: {what} ({', '.join(changed)})")
        elif (rel in left) != (rel in base_left):
            failures.append(f"{rel}: {'left out' if rel in left else 'no longer left out'} though intact")
    return failures


def check_resume(store: Path, ref: Path, runs: Sequence[Path]) -> list[str]:
    """Relaunch the interrupted runs: each must end with its own uninterrupted logs (no foreign state)."""
    failures = []
    for opt, steps, _ in INTERRUPTED:
        run = resolve(compose(_overrides(store, opt, steps)))
        path = run_path(run.out, run)
        with _quiet():
            code = lifecycle.run_one(run)
        mine = path
        theirs = run_path(ref, run)
        if code != 0:
            failures.append(f"relaunch of {path.relative_to(store)} exited {code}")
            continue
        for name in ("steps.csv", "epochs.csv"):
            # every cell but the training clock's readings (time_s), which no rerun repeats
            if without_time((mine / name).read_text()) != without_time((theirs / name).read_text()):
                failures.append(f"relaunch of {path.relative_to(store)}: {name} differs from its reference")
    return failures


def random_case(rng: random.Random, n_runs: int) -> list[Corruption]:
    """One to three random corruptions."""
    out = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("flip", "flip", "cut", "json", "json", "swap", "swap_checkpoint"))
        out.append(
            Corruption(
                kind=kind,
                a=rng.randrange(n_runs),
                b=rng.randrange(n_runs),
                file=rng.choice(FILES),
                where=rng.random(),
                byte=rng.choice(BREAKING_BYTES),
                field=rng.choice(JSON_FIELDS),
                value=rng.choice(JSON_VALUES),
            )
        )
    return out


def run_case(
    root: Path,
    store: Path,
    ref: Path,
    baseline: tuple[dict[str, Any], dict[str, Any]],
    case: Sequence[Corruption],
    resume: bool,
) -> list[str]:
    """Copy the store, corrupt it, check the reader (and with ``resume`` the relaunches)."""
    work = Path(tempfile.mkdtemp(dir=root, prefix="case-"))
    try:
        copy = work / "store"
        shutil.copytree(store, copy)
        runs = run_dirs(copy)
        damaged: set[Path] = set()
        for c in case:
            damaged |= apply(copy, runs, c)
        failures = check(copy, baseline, damaged)
        if resume:
            failures += check_resume(copy, ref, runs)
        return failures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--resume-every", type=int, default=10, help="relaunch the runs every N cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write store_summary.json here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="fuzz-store-") as tmp:
        root = Path(tmp)
        store, ref = make_store(root)
        baseline = numbers(store)
        n_runs = len(run_dirs(store))
        failures: list[dict[str, Any]] = []
        kinds: dict[str, int] = {}
        resumed = 0
        for i in range(args.cases):
            case = random_case(rng, n_runs)
            for c in case:
                kinds[c.kind] = kinds.get(c.kind, 0) + 1
            resume = args.resume_every > 0 and i % args.resume_every == 0
            resumed += resume
            found = run_case(root, store, ref, baseline, case, resume)
            if found:
                failures.append({"case": i, "corruptions": [c.describe() for c in case], "failures": found})
                print(f"case {i}: FAILED {[c.describe() for c in case]}: {found}", flush=True)
    summary = {
        "cases": args.cases,
        "failures": len(failures),
        "failed_cases": failures[:20],
        "corruptions": kinds,
        "relaunch_checks": resumed,
        "seed": args.seed,
        "store": {"completed": [list(x) for x in COMPLETED], "interrupted": [list(x) for x in INTERRUPTED]},
        "seconds": round(time.time() - t0, 1),
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "versions": versions(),
        "git_rev": git_rev(),
        "command": "python scripts/bench/fuzz_store.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(json.dumps({k: summary[k] for k in ("cases", "failures", "relaunch_checks", "seconds")}))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "store_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
