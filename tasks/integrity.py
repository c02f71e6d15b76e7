"""What the loaders check a dataset file against: its known size and its published checksum.

Structural checks (a cut gzip stream, an IDX header that disagrees with its data, a CSV cut mid-row, image
and label counts that differ) always apply, in the loaders. The checks here compare a file with the
published dataset: its number of examples and its checksum. They are on by default; a file that is not the
published one (a subset, a re-encoding) is used with ``OVERSHOOT_DATA_VERIFY=0``. A file's checksum is
computed once and cached under ``cache_dir()``, keyed by path, size, modification time, inode and change
time (the change time cannot be set back by hand, as a restored modification time can).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from overshoot.common.files import atomic_write_text

from .cache import cache_dir

VERIFY_ENV = "OVERSHOOT_DATA_VERIFY"
_HINT = f"re-copy it from the dataset's release (or set {VERIFY_ENV}=0 to use the file as it is)"

# (dataset, file name) -> the digests a good copy may have, as "algorithm:hex". md5: the dataset
# publishers' own (Zalando's Fashion-MNIST README, LeCun's MNIST page and the CIFAR pages, as torchvision
# lists them); sha256: the offline copies this project's data folder describes in its SHA256SUMS (their
# gzip streams were recompressed: the .gz bytes differ from the release).
CHECKSUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("fashion", "train-images-idx3-ubyte.gz"): (
        "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "sha256:b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    ),
    ("fashion", "train-labels-idx1-ubyte.gz"): (
        "md5:25c81989df183df01b3e8a0aad5dffbe",
        "sha256:0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    ),
    ("fashion", "t10k-images-idx3-ubyte.gz"): (
        "md5:bef4ecab320f06d8554ea6380940ec79",
        "sha256:cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    ),
    ("fashion", "t10k-labels-idx1-ubyte.gz"): (
        "md5:bb300cfdad3c16e7a12a480ee83cd310",
        "sha256:8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    ),
    ("mnist", "train-images-idx3-ubyte.gz"): ("md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",),
    ("mnist", "train-labels-idx1-ubyte.gz"): ("md5:d53e105ee54ea40749a09fcbcd1e9432",),
    ("mnist", "t10k-images-idx3-ubyte.gz"): ("md5:9fb629c4189551a2d022fa330f9573f3",),
    ("mnist", "t10k-labels-idx1-ubyte.gz"): ("md5:ec29112dd5afa0611ce80d1b7f02629c",),
    ("cifar10", "data_batch_1"): ("md5:c99cafc152244af753f735de768cd75f",),
    ("cifar10", "data_batch_2"): ("md5:d4bba439e000b95fd0a9bffe97cbabec",),
    ("cifar10", "data_batch_3"): ("md5:54ebc095f3ab1f0389bbae665268c751",),
    ("cifar10", "data_batch_4"): ("md5:634d18415352ddfa80567beed471001a",),
    ("cifar10", "data_batch_5"): ("md5:482c414d41f54cd18b22e5b47cb7c3cb",),
    ("cifar10", "test_batch"): ("md5:40351d587109b95175f43aff81a1287e",),
    ("cifar100", "train"): ("md5:16019d7e3df5f24257cddd939b257f8d",),
    ("cifar100", "test"): ("md5:f0ef6b0ae62326f3e7ffdfab6717acfc",),
    ("cifar10-jpeg", "train.zip"): (
        "sha256:7535619d681ecae959b6925f0fac250eda93d92f637e12d065098d49ceaebdd4",
    ),
    ("cifar10-jpeg", "test.zip"): (
        "sha256:c85d24bcf53f877447467edb08f30fc388d175fa00514667e43491e557f53606",
    ),
    ("housing", "cal_housing.csv"): (
        "sha256:534365b6c3c9b07c2b7d88e0ff9f1b41725d8b799748f5c0b80e1067f51c8ab3",
    ),
}

# (dataset, file name) -> the number of examples (images, labels or rows) the published file holds.
SIZES: dict[tuple[str, str], int] = {
    **{(d, f"train-{k}"): 60000 for d in ("fashion", "mnist") for k in ("images", "labels")},
    **{(d, f"t10k-{k}"): 10000 for d in ("fashion", "mnist") for k in ("images", "labels")},
    **{("cifar10", f"data_batch_{i}"): 10000 for i in range(1, 6)},
    ("cifar10", "test_batch"): 10000,
    ("cifar100", "train"): 50000,
    ("cifar100", "test"): 10000,
    ("cifar10-jpeg", "train.zip"): 50000,
    ("cifar10-jpeg", "test.zip"): 10000,
    ("housing", "cal_housing.csv"): 20640,
}


def verifying() -> bool:
    """Whether files are compared with the published datasets (OVERSHOOT_DATA_VERIFY is not 0)."""
    return os.environ.get(VERIFY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _size_key(name: str) -> str:
    """'train-images-idx3-ubyte.gz' -> 'train-images'; other names unchanged."""
    for prefix in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        if name.startswith(prefix):
            return prefix
    return name


def check_size(dataset: str, path: Path, count: int, what: str = "examples") -> None:
    """ValueError naming ``path`` when it holds ``count`` examples but the published file another number."""
    expected = SIZES.get((dataset, _size_key(Path(path).name)))
    if expected is None or not verifying() or count == expected:
        return
    raise ValueError(
        f"{path} holds {count:,} {what} but the published file holds {expected:,}: it is cut or not the "
        f"original; {_HINT}"
    )


def _cache_file() -> Path:
    return cache_dir() / "verified.json"


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(dataset: str, path: Path) -> None:
    """ValueError naming ``path`` when its checksum matches none of the known good copies of it. Computed
    once per (path, size, modification time, inode, change time); files without a known checksum pass."""
    good = CHECKSUMS.get((dataset, Path(path).name))
    if not good or not verifying():
        return
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_ctime_ns}"
    cache = _cache_file()
    try:
        seen = json.loads(cache.read_text())
        if not isinstance(seen, dict):
            seen = {}
    except (OSError, ValueError):
        seen = {}
    if seen.get(key) in good:
        return
    digests = {algo: _digest(path, algo) for algo in sorted({g.split(":")[0] for g in good})}
    match = next((g for g in good if digests[g.split(":")[0]] == g.split(":")[1]), None)
    if match is None:
        got = ", ".join(f"{a} {d}" for a, d in digests.items())
        raise ValueError(f"{path} does not match the published checksum ({got}): it is damaged; {_HINT}")
    seen[key] = match
    with contextlib.suppress(OSError):  # an unwritable cache only costs the hashing next time
        atomic_write_text(cache, json.dumps(seen, indent=1, sort_keys=True))
