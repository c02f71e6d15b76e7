"""Data files are not trusted: a cut or damaged file, a wrong size or checksum is one line naming the file."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from fixtures import write_cifar_pickles, write_housing_csv, write_idx, write_mnist_like
from overshoot_tasks import data, integrity
from overshoot_tasks.data import load_housing_csv, load_idx_dataset

from overshoot.config.compose import compose
from overshoot.train import lifecycle

REAL = Path(os.environ.get("OVERSHOOT_DATA", "/work/shared/data"))


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Compare with the published datasets (conftest turns it off for the small fixtures)."""
    monkeypatch.setenv(integrity.VERIFY_ENV, "1")
    monkeypatch.setenv("OVERSHOOT_CACHE", str(tmp_path / "cache"))


def _housing(tmp_path: Path, n: int = 300) -> Path:
    return write_housing_csv(tmp_path / "california-housing" / "cal_housing.csv", n=n)


def _load_fashion(root: Path) -> object:
    return load_idx_dataset("fmnist", root, ("fashion-mnist",), "Fashion-MNIST", dataset="fashion")


# -- structural checks (always on) --------------------------------------------------------------------


def test_housing_cut_inside_a_field(tmp_path: Path) -> None:
    f = _housing(tmp_path)
    text = f.read_text()
    f.write_text(text[: text.index("\n", len(text) // 2) + 4])  # 3 characters into a row's first field
    with pytest.raises(ValueError, match=re.escape(f"{f} ends in the middle of row")):
        load_housing_csv("housing", f)


def test_housing_header_only(tmp_path: Path) -> None:
    f = _housing(tmp_path)
    f.write_text(f.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{f} holds a header but no data rows")):
        load_housing_csv("housing", f)


def test_housing_cut_mid_row_then_continued(tmp_path: Path) -> None:
    f = _housing(tmp_path)
    lines = f.read_text().splitlines(keepends=True)
    lines[10] = lines[10][:20] + "\n"  # a row that lost its end (a bad copy), the rest intact
    f.write_text("".join(lines))
    with pytest.raises(ValueError, match=re.escape(f"{f}, line 11: ")):
        load_housing_csv("housing", f)


def test_idx_cut_gzip_and_count_mismatch(tmp_path: Path) -> None:
    d = write_mnist_like(tmp_path / "fashion-mnist")
    f = d / "train-images-idx3-ubyte.gz"
    full = f.read_bytes()
    f.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{f} is cut or damaged (gzip")):
        _load_fashion(tmp_path)
    f.write_bytes(full)
    labels = d / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(150, dtype=np.uint8))  # 200 images, 150 labels
    with pytest.raises(ValueError, match=re.escape(f"{f} holds 200 images but {labels} 150 labels")):
        _load_fashion(tmp_path)


def test_cut_cifar_pickle(tmp_path: Path) -> None:
    write_cifar_pickles(tmp_path, 100)
    f = tmp_path / "cifar-100-python" / "train"
    f.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(ValueError, match=re.escape(f"{f} is cut or damaged")):
        data.load_cifar100_pickle("cifar100", tmp_path)


def test_a_cut_data_file_is_one_line_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _housing(tmp_path)
    f.write_text(f.read_text()[:-7])
    overrides = ["task=housing", f"data.root={tmp_path}", f"out={tmp_path / 'runs'}", "max_steps=3"]
    assert lifecycle.run_one(compose([*overrides, "progress=none"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{f} ends in the middle of row" in err


# -- comparison with the published files ---------------------------------------------------------------


@pytest.mark.usefixtures("verify")
def test_sizes_are_compared_with_the_published_file(tmp_path: Path) -> None:
    f = _housing(tmp_path, n=300)
    with pytest.raises(
        ValueError, match=re.escape(f"{f} holds 300 rows but the published file holds 20,640")
    ):
        load_housing_csv("housing", f)
    write_mnist_like(tmp_path / "fashion-mnist")
    images = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    with pytest.raises(
        ValueError, match=re.escape(f"{images} holds 200 images but the published file holds 60,000")
    ):
        _load_fashion(tmp_path)


@pytest.mark.usefixtures("verify")
def test_checksums_are_verified_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _housing(tmp_path, n=300)
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    monkeypatch.setitem(integrity.SIZES, ("housing", "cal_housing.csv"), 300)
    monkeypatch.setitem(integrity.CHECKSUMS, ("housing", "cal_housing.csv"), ("sha256:" + "0" * 64,))
    with pytest.raises(
        ValueError, match=re.escape(f"{f} does not match the published checksum (sha256 {good})")
    ):
        load_housing_csv("housing", f)
    monkeypatch.setitem(
        integrity.CHECKSUMS, ("housing", "cal_housing.csv"), ("md5:" + "0" * 32, f"sha256:{good}")
    )
    load_housing_csv("housing", f)
    calls = []
    monkeypatch.setattr(integrity, "_digest", lambda *a: calls.append(a) or "")
    load_housing_csv("housing", f)  # cached by path, size and modification time: not hashed again
    assert calls == []
    with open(f, "a") as fh:  # changed: hashed again, and refused
        fh.write(fh.name[:0])
    os.utime(f, ns=(0, 0))
    with pytest.raises(ValueError, match="does not match the published checksum"):
        load_housing_csv("housing", f)


def test_pickled_cifar_sizes_use_the_published_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(integrity.VERIFY_ENV, "1")
    write_cifar_pickles(tmp_path, 10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(batch, "rb") as fh:
        assert isinstance(pickle.load(fh, encoding="bytes"), dict)
    with pytest.raises(ValueError, match=re.escape(f"{batch} holds ")):
        data.load_cifar10_pickle("cifar", tmp_path)


@pytest.mark.skipif(not (REAL / "fashion-mnist").is_dir(), reason=f"real data not found at {REAL}")
@pytest.mark.usefixtures("verify")
def test_the_real_files_pass(tmp_path: Path) -> None:
    x_tr, y_tr, x_te, y_te = _load_fashion(REAL)  # type: ignore[misc]
    assert len(x_tr) == len(y_tr) == 60000 and len(x_te) == len(y_te) == 10000
    x, _ = load_housing_csv("housing", REAL / "california-housing" / "cal_housing.csv")
    assert len(x) == 20640
    assert (tmp_path / "cache" / "verified.json").is_file()


def test_an_idx_header_that_disagrees_with_its_data_names_the_file(tmp_path: Path) -> None:
    d = write_mnist_like(tmp_path / "fashion-mnist")
    f = d / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x32" + bytes(10)))  # says 50, holds 10
    with pytest.raises(ValueError, match=re.escape(f"{f}: IDX header says (50,) but holds 10 values")):
        _load_fashion(tmp_path)
