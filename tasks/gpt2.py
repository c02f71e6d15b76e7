"""gpt2_qqp (GPT-2 small + LoRA on GLUE QQP) and gpt2_text (a small GPT-2 LM from scratch on a text file)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from overshoot.common.extras import require_for

from .base import (
    DATA_HINT,
    Batch,
    DataMissingError,
    EpochPlan,
    classification_criterion,
    data_path,
    missing,
    plan_generator,
    read_options,
    steps_per_epoch,
)
from .data import cache_dir

# -- local Hugging Face files -------------------------------------------------------------------------


def require_tokenizer(task: str, d: Path) -> None:
    """DataMissingError unless `d` holds GPT-2 tokenizer files (tokenizer.json or vocab.json + merges.txt)."""
    if (d / "tokenizer.json").is_file() or ((d / "vocab.json").is_file() and (d / "merges.txt").is_file()):
        return
    raise missing(task, d / "tokenizer.json", "the GPT-2 tokenizer files (save_pretrained output)", d)


def require_model(task: str, d: Path) -> None:
    """DataMissingError unless `d` holds a saved GPT-2 model (config.json and weights)."""
    if not (d / "config.json").is_file():
        raise missing(task, d / "config.json", "the pretrained GPT-2 (save_pretrained output of 'gpt2')", d)
    if not any(
        (d / n).is_file() for n in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    ):
        raise missing(
            task, d / "model.safetensors", "the pretrained GPT-2 (save_pretrained output of 'gpt2')", d
        )


def load_tokenizer(task: str, d: Path) -> Any:
    """The GPT-2 BPE tokenizer from a local folder (no download)."""
    from transformers import AutoTokenizer

    require_tokenizer(task, d)
    return AutoTokenizer.from_pretrained(str(d), local_files_only=True)


class SequenceClassifier(nn.Module):
    """Wraps a Hugging Face classifier so that model(input_ids, attention_mask) returns the logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_labels]."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class LanguageModel(nn.Module):
    """Wraps a Hugging Face causal LM so that model(input_ids) returns the logits [B, T, V]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits."""
        return self.model(input_ids=input_ids).logits


# -- GLUE QQP -----------------------------------------------------------------------------------------

QQP_DEFAULTS: dict[str, Any] = {
    "path": "glue-qqp",
    "model_dir": "gpt2",
    "max_length": 512,
    "pad_multiple": 8,
    "lora_r": 8,
    "lora_alpha": 8,
    "lora_dropout": 0.1,
}


def load_qqp(task: str, d: Path) -> Any:
    """GLUE QQP as a DatasetDict: a save_to_disk folder, or the hub's train-*/validation-* parquet files."""
    from datasets import load_dataset, load_from_disk

    if (d / "dataset_dict.json").is_file():
        return load_from_disk(str(d))
    files = {s: sorted(str(p) for p in d.rglob(f"{s}-*.parquet")) for s in ("train", "validation")}
    if d.is_dir() and all(files.values()):
        return load_dataset("parquet", data_files=files, cache_dir=str(cache_dir() / "hf-datasets"))
    raise DataMissingError(
        f"{task}: missing {d / 'dataset_dict.json'}; put GLUE QQP in {d}/ (DatasetDict.save_to_disk of "
        f"load_dataset('glue', 'qqp'), or its train-*/validation-*.parquet files) {DATA_HINT}"
    )


class PackedText:
    """Variable-length token sequences packed in one flat tensor on the device, padded per batch."""

    def __init__(self, seqs: list[list[int]], labels: list[int], pad_id: int, device: torch.device) -> None:
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
        self.offsets = (torch.cumsum(lengths, 0) - lengths).to(device)
        self.lengths = lengths.to(device)
        flat = [t for s in seqs for t in s] or [pad_id]
        self.flat = torch.tensor(flat, dtype=torch.int64, device=device)
        self.labels = torch.tensor(labels, dtype=torch.int64, device=device)
        self.pad_id = int(pad_id)

    def __len__(self) -> int:
        return int(self.lengths.numel())

    def batch(self, idx: torch.Tensor, width: int) -> Batch:
        """Rows `idx` right-padded with pad_id to `width` tokens, with their attention mask and labels."""
        pos = torch.arange(width, device=idx.device)
        mask = pos < self.lengths[idx].unsqueeze(1)
        at = (self.offsets[idx].unsqueeze(1) + pos).clamp(max=self.flat.numel() - 1)
        ids = torch.where(mask, self.flat[at], self.pad_id)
        return {"input_ids": ids, "attention_mask": mask.to(torch.int64), "y": self.labels[idx]}


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


class QQPTask:
    """GPT-2 small for sequence classification + LoRA on c_attn; QQP validation split is the test set."""

    name = "gpt2_qqp"
    metric: Literal["accuracy"] = "accuracy"
    metric_scale = 1.0

    def __init__(self, opts: dict[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype, self.opts = torch.device(device), dtype, opts
        self.model_dir = data_path(root, str(opts["model_dir"]))
        require_model(self.name, self.model_dir)
        ds = load_qqp(self.name, data_path(root, str(opts["path"])))
        tok = load_tokenizer(self.name, self.model_dir)
        self.pad_id = int(tok.eos_token_id)
        self.max_length = int(opts["max_length"])
        self.pad_multiple = int(opts["pad_multiple"])
        self.data = {
            split: self._encode(tok, ds[hf_split])
            for split, hf_split in (("train", "train"), ("test", "validation"))
        }
        self.n_train = len(self.data["train"])

    def _encode(self, tok: Any, rows: Any) -> PackedText:
        texts = [f"{a}  {b}" for a, b in zip(rows["question1"], rows["question2"], strict=True)]
        enc = tok(texts, truncation=True, max_length=self.max_length)
        return PackedText(enc["input_ids"], list(rows["label"]), self.pad_id, self.device)

    def build_model(self) -> nn.Module:
        """Pretrained GPT-2 classifier (2 labels, pad = eos) with LoRA adapters; head trainable."""
        from peft import LoraConfig, TaskType, get_peft_model
        from transformers import GPT2ForSequenceClassification

        model = GPT2ForSequenceClassification.from_pretrained(
            str(self.model_dir), num_labels=2, local_files_only=True
        )
        model.config.pad_token_id = model.config.eos_token_id  # type: ignore[assignment]
        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=int(self.opts["lora_r"]),
            lora_alpha=int(self.opts["lora_alpha"]),
            lora_dropout=float(self.opts["lora_dropout"]),
            target_modules=["c_attn"],
            fan_in_fan_out=True,
        )
        return SequenceClassifier(get_peft_model(model, lora)).to(device=self.device, dtype=self.dtype)

    def epoch_plan(self, seed: int, epoch: int, batch_size: int) -> EpochPlan:
        """Permutation for the epoch plus each batch's padded width (one host sync per epoch, here)."""
        steps = steps_per_epoch(self.n_train, batch_size)
        gen = plan_generator(seed, epoch, self.device)
        index = torch.randperm(self.n_train, generator=gen, device=self.device)[: steps * batch_size]
        longest = self.data["train"].lengths[index].view(steps, batch_size).amax(dim=1).clamp(min=1)
        widths = tuple(_round_up(int(w), self.pad_multiple) for w in longest.tolist())
        return EpochPlan(int(seed), int(epoch), int(batch_size), steps, index, {}, widths)

    def train_batch(self, plan: EpochPlan, k: int) -> Batch:
        """The k-th batch, padded to its own longest sequence."""
        return self.data["train"].batch(plan.index[plan.rows(k)], plan.meta[k])

    def has_split(self, split: str) -> bool:
        """Only "test" (QQP's validation split) exists."""
        return split == "test"

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """The test split in order."""
        if split != "test":
            raise ValueError(f"task {self.name} has no {split!r} split; it has ['test']")
        data = self.data["test"]
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)), device=self.device)
            width = _round_up(max(1, int(data.lengths[idx].max())), self.pad_multiple)
            yield data.batch(idx, width)

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """(input_ids, attention_mask)."""
        return batch["input_ids"], batch["attention_mask"]

    def criterion(self, out: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cross-entropy and correct count."""
        return classification_criterion(out, batch)


# -- language modelling on a text file -----------------------------------------------------------------

TEXT_DEFAULTS: dict[str, Any] = {
    "path": "tinyshakespeare/input.txt",
    "tokenizer": "char",
    "tokenizer_dir": "gpt2",
    "seq_len": 128,
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "dropout": 0.0,
    "val_fraction": 0.05,
    "test_fraction": 0.05,
}


class TextLMTask:
    """A GPT-2 LM (small GPT2Config) trained from scratch on a text file: char-level or local GPT-2 BPE.

    The token stream is split in order into train / val / test. Each epoch covers the training stream in
    non-overlapping windows of seq_len tokens, shuffled, from a random offset drawn per epoch.
    """

    name = "gpt2_text"
    metric: Literal["loss"] = "loss"
    metric_scale = 1.0

    def __init__(self, opts: dict[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype, self.opts = torch.device(device), dtype, opts
        path = data_path(root, str(opts["path"]))
        if not path.is_file():
            raise missing(
                self.name, path, "a plain-text training file (Tiny Shakespeare's input.txt)", path.parent
            )
        text = path.read_text(encoding="utf-8")
        if opts["tokenizer"] == "char":
            chars = sorted(set(text))
            self.vocab = chars
            lookup = {c: i for i, c in enumerate(chars)}
            ids = [lookup[c] for c in text]
            self.vocab_size = len(chars)
            self.eos_id: int | None = None
        elif opts["tokenizer"] == "gpt2":
            tok = load_tokenizer(self.name, data_path(root, str(opts["tokenizer_dir"])))
            ids = tok(text, verbose=False)["input_ids"]
            self.vocab_size = len(tok)
            self.eos_id = tok.eos_token_id
        else:
            raise ValueError(f"gpt2_text: tokenizer must be 'char' or 'gpt2', got {opts['tokenizer']!r}")
        self.seq_len = int(opts["seq_len"])
        tokens = torch.tensor(ids, dtype=torch.int64)
        n = len(tokens)
        n_test = int(n * float(opts["test_fraction"]))
        n_val = int(n * float(opts["val_fraction"]))
        parts = {"train": tokens[: n - n_val - n_test], "val": tokens[n - n_val - n_test : n - n_test]}
        parts["test"] = tokens[n - n_test :]
        self.tokens = {k: v.to(self.device) for k, v in parts.items() if (len(v) - 1) // self.seq_len >= 1}
        if "train" not in self.tokens or (len(parts["train"]) - 1) // self.seq_len < 2:
            raise ValueError(f"gpt2_text: {path} is too short for seq_len {self.seq_len}; use a longer text")
        self.n_train = (len(parts["train"]) - 1) // self.seq_len - 1
        self._window = torch.arange(self.seq_len + 1, device=self.device)

    def build_model(self) -> nn.Module:
        """GPT2LMHeadModel from a small GPT2Config, randomly initialised."""
        from transformers import GPT2Config, GPT2LMHeadModel

        o = self.opts
        p = float(o["dropout"])
        config = GPT2Config(
            vocab_size=self.vocab_size,
            n_positions=self.seq_len,
            n_embd=int(o["n_embd"]),
            n_layer=int(o["n_layer"]),
            n_head=int(o["n_head"]),
            resid_pdrop=p,
            embd_pdrop=p,
            attn_pdrop=p,
            bos_token_id=self.eos_id,
            eos_token_id=self.eos_id,
        )
        return LanguageModel(GPT2LMHeadModel(config)).to(device=self.device, dtype=self.dtype)

    def epoch_plan(self, seed: int, epoch: int, batch_size: int) -> EpochPlan:
        """Shuffled window start positions, shifted by a random per-epoch offset."""
        steps = steps_per_epoch(self.n_train, batch_size)
        gen = plan_generator(seed, epoch, self.device)
        offset = torch.randint(0, self.seq_len, (1,), generator=gen, device=self.device)
        perm = torch.randperm(self.n_train, generator=gen, device=self.device)[: steps * batch_size]
        return EpochPlan(int(seed), int(epoch), int(batch_size), steps, offset + perm * self.seq_len)

    def _windows(self, stream: torch.Tensor, starts: torch.Tensor) -> Batch:
        seq = stream[starts.unsqueeze(1) + self._window]
        return {"x": seq[:, :-1], "y": seq[:, 1:]}

    def train_batch(self, plan: EpochPlan, k: int) -> Batch:
        """Inputs and next-token targets [B, seq_len] of the k-th batch."""
        return self._windows(self.tokens["train"], plan.index[plan.rows(k)])

    def has_split(self, split: str) -> bool:
        """Whether the val/test stream is long enough for one window."""
        return split in ("val", "test") and split in self.tokens

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """Non-overlapping windows of the split's stream, in order."""
        if not self.has_split(split):
            raise ValueError(f"task {self.name} has no {split!r} split; raise val_fraction / test_fraction")
        stream = self.tokens[split]
        starts = torch.arange(0, (len(stream) - 1) // self.seq_len, device=self.device) * self.seq_len
        for i in range(0, len(starts), batch_size):
            yield self._windows(stream, starts[i : i + batch_size])

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """(input_ids,)."""
        return (batch["x"],)

    def criterion(self, out: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean next-token cross-entropy; no accuracy."""
        return F.cross_entropy(out.flatten(0, -2), batch["y"].flatten()), None


def build_qqp(cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> QQPTask:
    """The gpt2_qqp task from its config node (MissingExtra without the [text] extra)."""
    require_for("task=gpt2_qqp")
    return QQPTask(read_options("gpt2_qqp", cfg, QQP_DEFAULTS), Path(root), device, dtype)


def build_text(cfg: Mapping[str, Any], root: Path, device: torch.device, dtype: torch.dtype) -> TextLMTask:
    """The gpt2_text task from its config node (MissingExtra without the [text] extra's transformers)."""
    require_for("task=gpt2_text")
    return TextLMTask(read_options("gpt2_text", cfg, TEXT_DEFAULTS), Path(root), device, dtype)
