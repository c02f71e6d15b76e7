"""Writers of small datasets in the real on-disk formats the task loaders read (for tests)."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from overshoot_tasks.data import CIFAR10_CLASSES, HOUSING_COLUMNS


def _images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images with a class-dependent mean pattern plus noise (so a model can learn something)."""
    templates = rng.integers(0, 256, size=(int(labels.max()) + 1, *shape)).astype(np.float64)
    noise = rng.normal(0.0, 30.0, size=(len(labels), *shape))
    return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """One gzipped IDX file (uint8 data)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()))


def write_mnist_like(folder: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """The four MNIST/Fashion-MNIST IDX .gz files (28x28, 10 classes) in `folder`."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", _images(rng, labels, (28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def write_cifar10_jpeg(root: Path, per_class_train: int = 4, per_class_test: int = 2, seed: int = 0) -> Path:
    """`root/cifar10-jpeg/{train,test}.zip` of `<split>/<class>/<nnnn>.jpg` 32x32 JPEGs (stored zip)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    d = root / "cifar10-jpeg"
    d.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        with zipfile.ZipFile(d / f"{split}.zip", "w", compression=zipfile.ZIP_STORED) as zf:
            for label, cls in enumerate(CIFAR10_CLASSES):
                imgs = _images(rng, np.full(per_class, label), (32, 32, 3))
                for i, img in enumerate(imgs):
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, format="JPEG", quality=95)
                    zf.writestr(f"{split}/{cls}/{i:04d}.jpg", buf.getvalue())
    return d


def _write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar_pickles(
    root: Path, classes: int, n_train: int = 100, n_test: int = 40, seed: int = 0
) -> Path:
    """torchvision's CIFAR python layout: `cifar-10-batches-py` (classes=10) or `cifar-100-python` (100).

    Keys are bytes, as in the real Python-2 pickles.
    """
    rng = np.random.default_rng(seed)

    def batch(n: int, key: bytes) -> dict:
        labels = rng.integers(0, classes, size=n)
        data = _images(rng, labels, (3, 32, 32)).reshape(n, 3072)
        return {b"data": data, key: labels.tolist(), b"filenames": [f"{i}.png".encode() for i in range(n)]}

    if classes == 10:
        d = root / "cifar-10-batches-py"
        per = n_train // 5
        for i in range(1, 6):
            _write_pickle(d / f"data_batch_{i}", batch(per, b"labels"))
        _write_pickle(d / "test_batch", batch(n_test, b"labels"))
    else:
        d = root / "cifar-100-python"
        for name, n in (("train", n_train), ("test", n_test)):
            b = batch(n, b"fine_labels")
            b[b"coarse_labels"] = [y // 5 for y in b[b"fine_labels"]]
            _write_pickle(d / name, b)
    return d


def write_housing_csv(path: Path, n: int = 300, seed: int = 0) -> Path:
    """A StatLib-style California housing CSV with header (columns in the real file's order)."""
    rng = np.random.default_rng(seed)
    households = rng.integers(50, 1500, size=n).astype(float)
    income = rng.uniform(0.5, 15.0, size=n)
    cols = {
        "longitude": rng.uniform(-124.3, -114.3, size=n),
        "latitude": rng.uniform(32.5, 42.0, size=n),
        "housing_median_age": rng.integers(1, 52, size=n).astype(float),
        "total_rooms": households * rng.uniform(3, 8, size=n),
        "total_bedrooms": households * rng.uniform(0.8, 1.3, size=n),
        "population": households * rng.uniform(1.5, 4.0, size=n),
        "households": households,
        "median_income": income,
        "median_house_value": np.clip(40000 * income + rng.normal(0, 30000, size=n), 15000, 500001),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.stack([cols[c] for c in HOUSING_COLUMNS], axis=1)
    np.savetxt(path, table, delimiter=",", header=",".join(HOUSING_COLUMNS), comments="", fmt="%.6f")
    return path


def write_text(path: Path, repeats: int = 60) -> Path:
    """A small plain-text corpus."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    path.write_text(line * repeats, encoding="utf-8")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_gpt2(
    folder: Path, n_layer: int = 1, n_embd: int = 16, n_head: int = 2, n_positions: int = 128
) -> Path:
    """A tiny randomly initialised GPT-2 and a byte-level BPE tokenizer, both saved with save_pretrained."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("o", "u")]
    vocab = {c: i for i, c in enumerate(byte_chars)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    # The files of the hub's "gpt2" tokenizer: vocab.json, merges.txt and a tokenizer_config.json.
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges_txt = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    (folder / "merges.txt").write_text(merges_txt, encoding="utf-8")
    tok_config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": n_positions}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config), encoding="utf-8")
    eos = vocab["<|endoftext|>"]
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    return folder


QQP_WORDS = ("the", "a", "how", "what", "is", "why", "can", "i", "do", "you", "in", "of", "to", "best", "way")


def write_qqp(folder: Path, n_train: int = 48, n_val: int = 16, seed: int = 0) -> Path:
    """A tiny GLUE-QQP DatasetDict (train, validation, test with label -1) saved with save_to_disk."""
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(seed)
    words = QQP_WORDS

    def split(n: int, labelled: bool) -> Dataset:
        q1 = [" ".join(rng.choice(words, size=rng.integers(3, 12))) + "?" for _ in range(n)]
        q2 = [" ".join(rng.choice(words, size=rng.integers(3, 12))) + "?" for _ in range(n)]
        labels = rng.integers(0, 2, size=n).tolist() if labelled else [-1] * n
        return Dataset.from_dict({"question1": q1, "question2": q2, "label": labels, "idx": list(range(n))})

    DatasetDict(
        {"train": split(n_train, True), "validation": split(n_val, True), "test": split(8, False)}
    ).save_to_disk(str(folder))
    return folder


def write_every_dataset(root: Path) -> Path:
    """A small file of every dataset under `root`, in the layouts the README and torchvision use."""
    write_housing_csv(root / "california-housing" / "cal_housing.csv")
    write_mnist_like(root / "fashion-mnist", seed=1)  # the layout of the shared data folder
    write_mnist_like(root / "MNIST" / "raw", seed=2)  # torchvision's layout
    write_cifar10_jpeg(root)
    write_cifar_pickles(root, 100)
    write_qqp(root / "glue-qqp")
    write_gpt2(root / "gpt2")
    write_text(root / "tinyshakespeare" / "input.txt")
    return root


def single_run_parts(run: Any) -> tuple[Any, Any, Any]:
    """The task (float32, on the CPU), run writer and device ``overshoot.train.single.train(run, ...)``
    takes."""
    import torch
    from overshoot_tasks import build_task

    from overshoot.store.writer import RunWriter, run_path
    from overshoot.train.runtime import pick_device

    device = pick_device("cpu")
    task = build_task(run.task_options, Path(run.data_root), device, torch.float32)
    return task, RunWriter(run_path(run.out, run)), device
