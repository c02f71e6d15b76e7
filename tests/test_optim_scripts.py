"""Smoke tests of the optimizer benchmark and fast-path check scripts on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
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
