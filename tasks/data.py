"""Readers for the real on-disk dataset formats (IDX, CIFAR pickles, CIFAR JPEG zips, housing CSV)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import pickle
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overshoot.common.files import atomic_torch_save

from .base import missing
from .cache import cache_dir
from .integrity import check_size, verify_checksum

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# -- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------------------

_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped when the name ends in .gz)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:  # a cut or damaged gzip stream
        raise ValueError(f"{path} is cut or damaged (gzip: {e}); re-download it") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number); re-download it")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(
            f"{path}: IDX header says {tuple(int(d) for d in dims)} but holds {data.size} values; "
            "re-download it"
        )
    return data.reshape(tuple(dims)).astype(dtype.newbyteorder("="))


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_idx_dataset(task: str, root: Path, folders: tuple[str, ...], what: str, dataset: str = "") -> Arrays:
    """(x_train uint8 [N,1,28,28], y_train int64, x_test, y_test) from the first folder holding the IDX files.

    Each folder is tried as given (e.g. `fashion-mnist`, torchvision's `FashionMNIST/raw`); files may be
    gzipped or not. Images and labels must agree in number; with ``dataset`` (``fashion`` or ``mnist``)
    each file is also checked against the published one's size and checksum (tasks.integrity).
    """
    for folder in folders:
        d = Path(root) / folder
        found = [next((p for p in (d / f"{n}.gz", d / n) if p.is_file()), None) for n in IDX_FILES]
        if all(p is not None for p in found):
            paths = [p for p in found if p is not None]
            arrays = [read_idx(p) for p in paths]
            for i in (0, 2):
                images, labels = arrays[i], arrays[i + 1]
                if images.ndim != 3 or labels.ndim != 1:
                    raise ValueError(f"{paths[i]} / {paths[i + 1]}: expected images [N,H,W] and labels [N]")
                if len(images) != len(labels):
                    raise ValueError(
                        f"{paths[i]} holds {len(images):,} images but {paths[i + 1]} {len(labels):,} labels: "
                        "one of them is cut or from another release; re-download them"
                    )
            for p, a in zip(paths, arrays, strict=True):
                check_size(dataset, p, len(a), "images" if a.ndim == 3 else "labels")
                verify_checksum(dataset, p)
            x_tr, y_tr, x_te, y_te = arrays
            return (
                torch.from_numpy(np.ascontiguousarray(x_tr)).unsqueeze(1),
                torch.from_numpy(y_tr.astype(np.int64)),
                torch.from_numpy(np.ascontiguousarray(x_te)).unsqueeze(1),
                torch.from_numpy(y_te.astype(np.int64)),
            )
        if any(p is not None for p in found):
            first_missing = d / f"{IDX_FILES[[p is None for p in found].index(True)]}.gz"
            raise missing(task, first_missing, f"the {what} IDX .gz files", d)
    d = Path(root) / folders[0]
    raise missing(task, d / f"{IDX_FILES[0]}.gz", f"the {what} IDX .gz files", d)


# -- CIFAR python pickles ---------------------------------------------------------------------------


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise ValueError(f"{path} is cut or damaged ({type(e).__name__}: {e}); re-extract it") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a CIFAR python batch (holds a {type(d).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _pickle_arrays(files: list[Path], label_key: str, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for p in files:
        d = _unpickle(p)
        if "data" not in d or label_key not in d:
            raise ValueError(f"{p} lacks its 'data' or '{label_key}' entry: not a CIFAR python batch")
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
            raise ValueError(
                f"{p} holds images of shape {data.shape} and {len(labels):,} labels: expected "
                "[N, 3072] and N labels; re-extract it"
            )
        check_size(dataset, p, len(data), "images")
        verify_checksum(dataset, p)
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


CIFAR10_PICKLES = [f"data_batch_{i}" for i in range(1, 6)]


def cifar10_pickle_present(root: Path) -> bool:
    """Whether torchvision's `cifar-10-batches-py` folder is complete under `root`."""
    d = Path(root) / "cifar-10-batches-py"
    return all((d / n).is_file() for n in [*CIFAR10_PICKLES, "test_batch"])


def load_cifar10_pickle(task: str, root: Path) -> Arrays:
    """CIFAR-10 from torchvision's python pickles: uint8 [N,3,32,32] images and int64 labels."""
    d = Path(root) / "cifar-10-batches-py"
    for n in [*CIFAR10_PICKLES, "test_batch"]:
        if not (d / n).is_file():
            raise missing(task, d / n, "the CIFAR-10 python batches (cifar-10-python.tar.gz extracted)", d)
    x_tr, y_tr = _pickle_arrays([d / n for n in CIFAR10_PICKLES], "labels", "cifar10")
    x_te, y_te = _pickle_arrays([d / "test_batch"], "labels", "cifar10")
    return x_tr, y_tr, x_te, y_te


def load_cifar100_pickle(task: str, root: Path) -> Arrays:
    """CIFAR-100 (fine labels) from torchvision's python pickles."""
    d = Path(root) / "cifar-100-python"
    for n in ("train", "test"):
        if not (d / n).is_file():
            raise missing(task, d / n, "the CIFAR-100 python files (cifar-100-python.tar.gz extracted)", d)
    x_tr, y_tr = _pickle_arrays([d / "train"], "fine_labels", "cifar100")
    x_te, y_te = _pickle_arrays([d / "test"], "fine_labels", "cifar100")
    return x_tr, y_tr, x_te, y_te


# -- CIFAR-10 JPEG zips -----------------------------------------------------------------------------


def _decode_jpegs(blobs: list[bytes]) -> torch.Tensor:
    """uint8 [N,3,H,W] RGB from JPEG bytes: torchvision.io's batched decoder, else PIL (same pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision >= 0.29 points to torchcodec
            from torchvision.io import ImageReadMode, decode_jpeg

            tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
            return torch.stack(decode_jpeg(tensors, mode=ImageReadMode.RGB))
    except (ImportError, RuntimeError):
        from PIL import Image

        arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _decode_zip(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode `<split>/<class>/<n>.jpg` entries of one zip (sorted by name) to uint8 [N,3,32,32] + labels."""
    label_of = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is cut or damaged (zip: {e}); re-download it") from None
    with zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith((".jpg", ".jpeg")))
        if not names:
            raise ValueError(f"{path} holds no .jpg files; expected <split>/<class>/<n>.jpg entries")
        labels, blobs = [], []
        for n in names:
            parts = n.split("/")
            if len(parts) < 2 or parts[-2] not in label_of:
                raise ValueError(f"{path}: entry {n} is not under a CIFAR-10 class folder {CIFAR10_CLASSES}")
            labels.append(label_of[parts[-2]])
            blobs.append(zf.read(n))
    check_size("cifar10-jpeg", path, len(blobs), "images")
    x = _decode_jpegs(blobs)
    if x.shape[1:] != (3, 32, 32):
        raise ValueError(f"{path}: images are {tuple(x.shape[1:])}, expected 3x32x32")
    return x, torch.tensor(labels, dtype=torch.int64)


def _cache_key(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def load_cifar10_jpeg(task: str, root: Path, use_cache: bool = True) -> Arrays:
    """CIFAR-10 from `<root>/cifar10-jpeg/{train,test}.zip`, decoded once and cached (see cache_dir)."""
    d = Path(root) / "cifar10-jpeg"
    zips = [d / "train.zip", d / "test.zip"]
    for z in zips:
        if not z.is_file():
            raise missing(task, z, "the CIFAR-10 JPEG zips (train.zip, test.zip)", d)
    for z in zips:
        verify_checksum("cifar10-jpeg", z)
    cache = cache_dir() / f"cifar10-jpeg-{_cache_key(zips)}.pt"
    if use_cache and cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            for z, key in zip(zips, ("x_train", "x_test"), strict=True):
                check_size("cifar10-jpeg", z, len(blob[key]), "images")
            return blob["x_train"], blob["y_train"], blob["x_test"], blob["y_test"]
        except Exception:  # a corrupt cache is rebuilt below
            pass
    x_tr, y_tr = _decode_zip(zips[0])
    x_te, y_te = _decode_zip(zips[1])
    if use_cache:
        with contextlib.suppress(OSError):  # an unwritable cache only costs the decode next time
            atomic_torch_save({"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}, cache)
    return x_tr, y_tr, x_te, y_te


# -- California housing CSV ---------------------------------------------------------------------------

HOUSING_COLUMNS = (
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
    "median_house_value",
)


def load_housing_csv(task: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8 California-housing features (float64 [N,8]) and target in $100k from the StatLib CSV.

    Feature order as sklearn.datasets.fetch_california_housing: MedInc, HouseAge, AveRooms, AveBedrms,
    Population, AveOccup, Latitude, Longitude.
    """
    if not path.is_file():
        raise missing(
            task, path, "cal_housing.csv (the StatLib California housing CSV with header)", path.parent
        )
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    header = [h.strip().strip('"') for h in (lines[0] if lines else "").strip().split(",")]
    absent = [c for c in HOUSING_COLUMNS if c not in header]
    if absent:
        raise ValueError(f"{path}: header lacks columns {absent}; expected {', '.join(HOUSING_COLUMNS)}")
    rows = [line for line in lines[1:] if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds a header but no data rows: re-copy the file")
    if not text.endswith("\n"):
        raise ValueError(f"{path} ends in the middle of row {len(rows)} (no final newline): the file is cut")
    for i, line in enumerate(rows, start=2):
        if line.count(",") != len(header) - 1:
            raise ValueError(
                f"{path}, line {i}: {line.count(',') + 1} fields, the header has {len(header)}: the file is "
                "cut or damaged there"
            )
    try:
        data = np.loadtxt(io.StringIO("\n".join(rows)), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: {str(e).splitlines()[0]}") from None
    check_size("housing", path, len(data), "rows")
    verify_checksum("housing", path)
    col = {c: data[:, header.index(c)] for c in HOUSING_COLUMNS}
    households = col["households"]
    features = np.stack(
        [
            col["median_income"],
            col["housing_median_age"],
            col["total_rooms"] / households,
            col["total_bedrooms"] / households,
            col["population"],
            col["population"] / households,
            col["latitude"],
            col["longitude"],
        ],
        axis=1,
    )
    return features, col["median_house_value"] / 100000.0
