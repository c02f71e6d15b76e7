"""Smoke tests of the optimizer benchmark and fast-path check (scripts/bench/) on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "scripts" / "bench"


def load(name: str):
    """The benchmark module ``scripts/bench/<name>.py``, imported as ``python scripts/bench/<name>.py`` would
    find its sibling modules (check_fast_paths imports bench_optimizer)."""
    if name == "check_fast_paths":
        sys.modules.setdefault("bench_optimizer", load("bench_optimizer"))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpt2_shapes_are_gpt2_small() -> None:
    bench = load("bench_optimizer")
    shapes = bench.gpt2_shapes()
    assert len(shapes) == 2 + 12 * 12 + 2
    assert shapes[0] == (50257, 768) and shapes[1] == (1024, 768)
    assert sum(math.prod(s) for s in shapes) == 124_439_808  # GPT-2 small with tied embeddings


def test_bench_runs_on_cpu(tmp_path: Path) -> None:
    bench = load("bench_optimizer")
    out = tmp_path / "bench.md"
    args = ["--device", "cpu", "--scale", "0.01", "--steps", "2", "--warmup", "1"]
    bench.main([*args, "--only", "SGDO|AdamW \\(for", "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text())
    names = [r["optimizer"] for r in res["rows"]]
    assert "torch AdamW (foreach)" in names and "SGDO gamma=5 (foreach)" in names
    assert all(r["ms_per_step"] > 0 and r["ratio_to_floor"] > 0 for r in res["rows"])
    assert "| SGDO gamma=5 (single) |" in out.read_text()


def test_bench_refuses_cuda_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("bench_optimizer")
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda"])


def test_check_fast_paths_refuses_without_fused_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    check = load("check_fast_paths")
    with pytest.raises(SystemExit):
        check.main(["--device", "cpu"])


def test_check_fast_paths_runs_as_a_script_under_the_interpreter(tmp_path: Path) -> None:
    """``python scripts/bench/check_fast_paths.py`` finds its sibling bench_optimizer with no path edit."""
    out = tmp_path / "c.md"
    args = ["--device", "cpu", "--scale", "0.002", "--steps", "2", "--out", str(out)]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run(
        [sys.executable, str(BENCHMARKS / "check_fast_paths.py"), *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["rows"] and all(row["ok"] for row in res["rows"])
