"""Fuzzers that keep issue 27 fixed, with a small budget (the long runs: scripts/bench/fuzz_store.py, results
under results/fuzz/): (a) random command lines from the real settings and hostile values; (b) random
corruptions of a small run store, read back by ``overshoot.analysis.results`` and resumed."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile import run_cli

from overshoot.config.compose import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
CI = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "12")),  # a long run: FUZZ_EXAMPLES=300
    deadline=None,
    derandomize=True,  # the same examples on every CI run; the long script explores
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _fuzz_store() -> ModuleType:
    """scripts/bench/fuzz_store.py as a module (loaded once)."""
    if "fuzz_store" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "fuzz_store", ROOT / "scripts" / "bench" / "fuzz_store.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fuzz_store"] = module
        spec.loader.exec_module(module)
    return sys.modules["fuzz_store"]


# -- (a) command lines -------------------------------------------------------------------------------------


def _settings() -> list[str]:
    """The settings of configs/config.yaml (log.* as such) and the config groups; out and the loggers left
    out (out is fixed to the test's folder; the loggers need extras)."""
    base = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text())
    keys = []
    for k, v in base.items():
        if k in ("defaults", "hydra", "out", "data"):
            continue
        if isinstance(v, dict):
            keys += [f"{k}.{s}" for s in v if s not in ("tensorboard", "wandb", "wandb_project")]
        else:
            keys.append(k)
    return sorted({*keys, "task", "optimizer", "preset"})


HOSTILE_VALUES = [
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e400",
    "1e30",
    str(2**70),
    "1" + "0" * 5000,
    "abc",
    "",
    "null",
    "true",
    "[1,2]",
    "{a:1}",
    "'1'",
    "1.5",
    "-0",
    "${oc.env:NO_SUCH_VARIABLE_X}",
    "${nope}",
    "é",
    "%s",
    "0x10",
    "1_000",
    "cuda",
    "tpu",
    "sgd",
    "digits",
]
JUNK = ["--foo", "-x", "+newkey=1", "~seed", "seed", "=1", "lr==1", "seed=1=2", "'", "${", "a b=1"]


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    keys = draw(st.lists(st.sampled_from(_settings()), min_size=1, max_size=3, unique=True))
    args = [f"{k}={draw(st.sampled_from(HOSTILE_VALUES))}" for k in keys]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(JUNK)))
    if draw(st.integers(0, 4)) == 0:
        args = ["-m", *args]
    return args


@CI
@given(args=command_lines())
def test_fuzz_command_lines_end_in_one_line_and_a_known_exit_status(tmp_path: Path, args: list[str]) -> None:
    fixed = {a.partition("=")[0] for a in args}
    base = [f"out={tmp_path / 'store'}"] + [
        f"{k}={v}" for k, v in (("progress", "none"), ("threads", "1"), ("max_steps", "3")) if k not in fixed
    ]
    code, _, err = run_cli([*base, *args], tmp_path)
    assert code in (0, 1, 2), (args, code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 3 and "Traceback" not in err, (args, err)


# -- (b) a corrupted store ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path, Path, Path, tuple]:
    """The fuzz script, a small intact store, its references and what the reader makes of it."""
    fz = _fuzz_store()
    root = tmp_path_factory.mktemp("fuzz")
    store, ref = fz.make_store(root)
    return fz, root, store, ref, fz.numbers(store)


@st.composite
def corruptions(draw: st.DrawFn) -> list:
    fz = _fuzz_store()
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("flip", "cut", "json", "swap", "swap_checkpoint")))
        out.append(
            fz.Corruption(
                kind=kind,
                a=draw(st.integers(0, 4)),
                b=draw(st.integers(0, 4)),
                file=draw(st.sampled_from(fz.FILES)),
                where=draw(st.floats(0, 1)),
                byte=draw(st.sampled_from(fz.BREAKING_BYTES)),
                field=draw(st.sampled_from(fz.JSON_FIELDS)),
                value=draw(st.sampled_from(fz.JSON_VALUES)),
            )
        )
    return out


@CI
@given(case=corruptions())
def test_fuzz_a_corrupted_store_is_read_without_a_wrong_number(fuzz_store: tuple, case: list) -> None:
    fz, root, store, ref, baseline = fuzz_store
    assert fz.run_case(root, store, ref, baseline, case, resume=False) == [], [c.describe() for c in case]


def test_fuzz_swapped_and_damaged_checkpoints_are_never_resumed_as_another_runs(fuzz_store: tuple) -> None:
    fz, root, store, ref, baseline = fuzz_store
    runs = fz.run_dirs(store)
    interrupted = [i for i, r in enumerate(runs) if (store / r / "checkpoint.pt").exists()]
    assert len(interrupted) == 2
    i, j = interrupted
    for case in (
        [fz.Corruption("swap_checkpoint", i, j)],
        [fz.Corruption("swap", i, j, file="steps.csv")],
        [fz.Corruption("flip", i, file="checkpoint.pt", where=0.5, byte=b"\xff")],
    ):
        assert fz.run_case(root, store, ref, baseline, case, resume=True) == [], [c.describe() for c in case]


def test_a_completed_run_with_too_few_evaluations_is_left_out(fuzz_store: tuple) -> None:
    fz, root, store, ref, baseline = fuzz_store
    runs = fz.run_dirs(store)
    done = next(i for i, r in enumerate(runs) if not (store / r / "checkpoint.pt").exists())
    other = next(i for i, r in enumerate(runs) if (store / r / "checkpoint.pt").exists())
    case = [fz.Corruption("swap", done, other, file="epochs.csv")]
    assert fz.run_case(root, store, ref, baseline, case, resume=False) == []
