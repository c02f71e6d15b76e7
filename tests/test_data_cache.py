"""The data cache (tasks.cache): a task's second build reads its prepared arrays instead of parsing the
source, gets the same tensors, rebuilds a damaged cache file and a changed source; and tasks/ imports only
overshoot.common and overshoot.optim, without circles between its own modules."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_housing_csv
from overshoot_tasks import build_task, cache, digits, housing

TASKS_DIR = Path(digits.__file__).resolve().parent


@pytest.fixture(autouse=True)
def _cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("OVERSHOOT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tensors(task: object) -> dict[str, torch.Tensor]:
    out = {f"train.{k}": v for k, v in task.train.items()}  # type: ignore[attr-defined]
    for split, d in task.splits.items():  # type: ignore[attr-defined]
        out |= {f"{split}.{k}": v for k, v in d.items()}
    return out


def _refuse(*args: object) -> None:
    raise AssertionError("the source was parsed again: the cache was not read")


@pytest.mark.parametrize("val_fraction", [0.0, 0.2])
@pytest.mark.parametrize("name", ["digits", "housing"])
def test_second_build_reads_the_cache(
    name: str, val_fraction: float, root: Path, _cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = {"name": name, "val_fraction": val_fraction}
    first = _tensors(build_task(cfg, root, "cpu", torch.float32))
    assert len(list((_cache / "arrays").glob(f"{name}-*.npz"))) == 1
    monkeypatch.setattr({"digits": digits, "housing": housing}[name], "_splits", _refuse)
    second = _tensors(build_task(cfg, root, "cpu", torch.float32))
    assert first.keys() == second.keys() and ({"val.x", "val.y"} <= first.keys()) == (val_fraction > 0)
    for k, v in first.items():
        assert torch.equal(v, second[k]) and v.dtype == second[k].dtype, k


def test_options_and_dtype_share_nothing_they_should_not(root: Path, _cache: Path) -> None:
    a = build_task({"name": "digits"}, root, "cpu", torch.float64)
    b = build_task({"name": "digits", "split_seed": 1}, root, "cpu", torch.float64)
    assert len(list((_cache / "arrays").glob("digits-*.npz"))) == 2  # another split, another file
    assert not torch.equal(a.train["y"], b.train["y"])  # type: ignore[attr-defined]
    c = build_task({"name": "digits"}, root, "cpu", torch.float32)
    assert c.train["x"].dtype == torch.float32  # type: ignore[attr-defined]
    assert torch.equal(c.train["x"], a.train["x"].float())  # type: ignore[attr-defined]


def test_a_damaged_cache_file_is_rebuilt(root: Path, _cache: Path) -> None:
    want = _tensors(build_task({"name": "housing"}, root, "cpu", torch.float32))
    (f,) = (_cache / "arrays").glob("housing-*.npz")
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte inside an array: the zip's CRC catches it
    f.write_bytes(bytes(raw))
    got = _tensors(build_task({"name": "housing"}, root, "cpu", torch.float32))
    assert all(torch.equal(v, got[k]) for k, v in want.items())
    assert cache.read_arrays(f) is not None  # rewritten whole


def test_a_changed_source_is_parsed_again(tmp_path: Path, _cache: Path) -> None:
    data = tmp_path / "data"
    csv = write_housing_csv(data / "california-housing" / "cal_housing.csv", n=200)
    a = build_task({"name": "housing"}, data, "cpu", torch.float64)
    write_housing_csv(csv, n=200, seed=5)
    b = build_task({"name": "housing"}, data, "cpu", torch.float64)
    assert len(list((_cache / "arrays").glob("housing-*.npz"))) == 2
    assert not torch.equal(a.train["x"], b.train["x"])  # type: ignore[attr-defined]


def test_missing_source_and_unwritable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"cal_housing\.csv"):
        build_task({"name": "housing"}, tmp_path / "nothing", "cpu", torch.float32)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("OVERSHOOT_CACHE", str(blocker))  # a file where the folder should be
    got = cache.cached_arrays("t", {"k": 1}, ["a"], lambda: {"a": np.arange(3)})
    assert got["a"].tolist() == [0, 1, 2]


def _imports(path: Path) -> set[str]:
    """The absolute modules imported anywhere in ``path`` and its relative imports as ``.name``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add("." * node.level + node.module)
    return out


def test_tasks_import_only_common_and_optim_without_circles() -> None:
    graph = {p.stem: _imports(p) for p in TASKS_DIR.glob("*.py")}
    for mod, names in graph.items():
        ours = [n for n in names if n == "overshoot" or n.startswith("overshoot.")]
        bad = [n for n in ours if not n.startswith(("overshoot.common", "overshoot.optim"))]
        assert not bad, f"tasks/{mod}.py imports {bad}: tasks may import overshoot.common and .optim only"
    edges = {m: {n[1:] for n in names if n.startswith(".") and n[1:] in graph} for m, names in graph.items()}

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges[a])

    circles = sorted(m for m in graph if reaches(m, m, set()))
    assert not circles, f"tasks/ modules in an import circle: {circles}"
