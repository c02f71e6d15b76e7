"""A run directory's files: where a run lives, its logs appended in whole rows, run.json and the
checkpoint."""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from overshoot.common.files import (
    UMASK,
    StoreError,
    atomic_torch_save,
    atomic_write_text,
    dumps_json,
    makedirs,
    quarantine,
    remove_stale_temps,
    store_error,
    warn,
    write_all,
)
from overshoot.config import methods, schema
from overshoot.config.run import RunConfig
from overshoot.config.schema import EPOCH_COLUMNS, STEP_COLUMNS, config_hash
from overshoot.store.claim import Claim


class LogMismatch(RuntimeError):
    """A log holds fewer whole rows than the checkpoint it is resumed with expects."""


def load_checkpoint_file(path: Path, required: Sequence[str] = ()) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None when there is none). An unreadable or incomplete one (empty, cut,
    not a checkpoint, missing ``required`` keys) is moved aside with a one-line warning and None returned."""
    path = Path(path)
    if not path.exists():
        return None
    import torch

    try:
        if zipfile.is_zipfile(path):  # torch's format: every record carries a CRC, checked here
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"its record {bad} fails its CRC check (damaged bytes)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a checkpoint")
        absent = [k for k in required if k not in state]
        if absent:
            raise ValueError(f"lacks {', '.join(absent)}")
    except Exception as e:  # torch.load raises EOFError, RuntimeError, UnpicklingError, zip errors...
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'empty or cut file'}"
        aside = quarantine(path, why)
        warn(f"{path} is unreadable ({why}); moved it to {aside.name}; restarting from step 0")
        return None
    return state


# -- naming ------------------------------------------------------------------------------------------


def run_path(out: Path | str, config: Mapping[str, Any] | RunConfig) -> Path:
    """Where the run of ``config`` lives: ``<out>/<task>/<method>/seed<seed>-<hash8>``."""
    d = config.to_dict() if isinstance(config, RunConfig) else config
    method = methods.label(str(d["optimizer"]), float(d.get("gamma") or 0.0))
    return Path(out) / str(d["task"]) / method / f"seed{d['seed']}-{config_hash(d)[:8]}"


def _format_rows(columns: Sequence[str], rows: Mapping[str, Sequence[Any]]) -> str:
    """CSV lines for a block of rows; floats keep every digit (``repr`` round-trips exactly)."""
    cols = [list(rows[c]) for c in columns]
    return "".join(",".join(map(str, cells)) + "\n" for cells in zip(*cols, strict=True))


def _resumed_columns(path: Path, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a resumed run goes on writing to its steps.csv at ``path``: ``columns``, or ``columns``
    without ``time_s`` when the log was begun before the training clock (its steps stay untimed: the time
    of the steps before the checkpoint is unknown)."""
    untimed = tuple(c for c in columns if c != "time_s")
    try:
        with open(path, errors="replace") as f:
            header = f.readline()
    except OSError:
        return columns
    return untimed if header == ",".join(untimed) + "\n" else columns


def without_time(text: str) -> str:
    """A log's text without its ``time_s`` column (unchanged when it has none): what a resumed or repeated
    run reproduces byte for byte, as the training clock's readings differ from run to run."""
    lines = text.split("\n")
    header = lines[0].split(",")
    if "time_s" not in header:
        return text
    j = header.index("time_s")
    return "\n".join(",".join(c for i, c in enumerate(x.split(",")) if i != j) if x else x for x in lines)


def run_identity(run: RunConfig) -> dict[str, Any]:
    """Whose state a single run's checkpoint is: its config hash, seed and method (saved in it, checked when
    it is loaded)."""
    return {
        "config_hash": config_hash(run),
        "seed": run.seed,
        "method": methods.label(run.optimizer, run.gamma),
    }


def _describe_identity(identity: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in identity.items())


@dataclass
class Checkpoint:
    """A checkpoint file: a run's own, or a population's (``holders``: its members' writers). It is written
    atomically and only while every holder still holds its run's claim. With ``identity`` (whose state it
    is, e.g. ``run_identity``), the identity is saved in it and a checkpoint of another run, or one that
    names none, is moved aside with one line instead of being resumed."""

    path: Path
    holders: Sequence[RunWriter] = ()
    identity: Mapping[str, Any] | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def foreign(self, state: Mapping[str, Any]) -> str | None:
        """Why the checkpoint content ``state`` is not this one's to resume (None when it is)."""
        if self.identity is None:
            return None
        theirs = state.get("identity")
        if not isinstance(theirs, Mapping):
            return "it names no run (written before checkpoints recorded their run), so it may be another's"
        if dict(theirs) == dict(self.identity):
            return None
        return (
            f"it belongs to another run ({_describe_identity(theirs)}), "
            f"not this one ({_describe_identity(self.identity)})"
        )

    def usable(self) -> bool:
        """Whether a checkpoint exists and is this one's; a foreign one is moved aside with one line. Reads
        the file lazily (memory-mapped tensors); an unreadable one is left to ``load`` to report."""
        if not self.path.exists():
            return False
        if self.identity is None:
            return True
        import torch

        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # not a zip checkpoint, cut, ...: load() moves it aside with its reason
            return True
        why = self.foreign(state) if isinstance(state, Mapping) else None
        if why is not None:
            self.quarantine(why)
            return False
        return True

    def logs_differ(self, state: Mapping[str, Any]) -> str | None:
        """Why the holders' logs are not the ones the checkpoint ``state`` was saved with (None when they
        are): the last row each log had then must be the row it has now at that position (a log swapped in
        from another run, or cut and rewritten, is not)."""
        tails = state.get("log_tails")
        if self.identity is None or not self.holders or tails is None:
            return None
        diverged = list(state.get("diverged") or [None] * len(self.holders))
        rows = state.get("epoch_rows") or []
        if not isinstance(tails, list) or len(tails) != len(self.holders) or len(rows) != len(self.holders):
            return "its record of the logs does not fit these runs"
        for j, h in enumerate(self.holders):
            if j < len(diverged) and diverged[j] is not None:
                continue  # a diverged member keeps its partial logs as they are
            for f, n, tail in (
                (h.steps_file, int(state["step"]), tails[j][0]),
                (h.epochs_file, rows[j], tails[j][1]),
            ):
                if n and tail is not None and _line_at(f, n) != tail:
                    return f"{f} is not the log it was saved with (row {n} differs)"
        return None

    def load(self, required: Sequence[str] = ()) -> dict[str, Any] | None:
        """The checkpoint, or None (also when unreadable or foreign, or when the logs are not the ones it
        was saved with: it is then moved aside with a warning)."""
        state = load_checkpoint_file(self.path, required)
        why = None if state is None else self.foreign(state) or self.logs_differ(state)
        if why is not None:
            self.quarantine(why)
            return None
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the checkpoint atomically (a failed write keeps the previous one)."""
        for h in self.holders:
            h._check()  # a member taken over by another process: stop before writing anything
        makedirs(self.path.parent)
        content = dict(state)
        if self.identity is not None:
            content["identity"] = dict(self.identity)
            content["log_tails"] = [
                [_last_line(h.steps_file), _last_line(h.epochs_file)] for h in self.holders
            ]
        atomic_torch_save(content, self.path)

    def quarantine(self, why: str) -> None:
        """Move a checkpoint that cannot be used aside, with a one-line warning naming it."""
        if self.path.exists():
            aside = quarantine(self.path, why)
            warn(f"{self.path}: {why}; moved it to {aside.name}; restarting from step 0")

    def drop(self, folder: bool = False) -> None:
        """Delete the checkpoint, and with ``folder`` its folder once empty (a population's)."""
        self.path.unlink(missing_ok=True)
        if folder:
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


def _last_line(path: Path) -> str | None:
    """The last whole line of a log (None when it has no row after its header, or does not exist)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 65536))
            lines = f.read().decode(errors="replace").split("\n")[:-1]
    except OSError:
        return None
    return lines[-1] if len(lines) >= 2 or (lines and size > 65536) else None


def _line_at(path: Path, n: int) -> str | None:
    """Row ``n`` (1 = the first after the header) of a log, None when it has fewer."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, line in enumerate(f):
                if i == n:
                    return line[:-1] if line.endswith("\n") else None
    except OSError:
        return None
    return None


def _cells_ok(cells: Sequence[str]) -> bool:
    """Whether a log row's cells read back as written: numbers ('nan' and 'inf' included), or a split name
    (epochs.csv's second column)."""
    for j, cell in enumerate(cells):
        if j == 1 and cell in ("val", "test"):
            continue
        try:
            float(cell)
        except ValueError:
            return False
        if cell != cell.strip() or "_" in cell:
            return False
    return True


@dataclass
class RunWriter:
    """Writes one run directory; the training loop's only way to touch the disk. With ``claim`` set, every
    write first checks that this process still holds the run."""

    path: Path
    step_columns: tuple[str, ...] = STEP_COLUMNS
    _info: dict[str, Any] = field(default_factory=dict)
    claim: Claim | None = None

    # the run's files: steps.csv, epochs.csv, checkpoint.pt, run.json
    steps_file: Path = field(init=False)
    epochs_file: Path = field(init=False)
    checkpoint_file: Path = field(init=False)
    info_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.steps_file = self.path / "steps.csv"
        self.epochs_file = self.path / "epochs.csv"
        self.checkpoint_file = self.path / "checkpoint.pt"
        self.info_file = self.path / "run.json"

    def _check(self) -> None:
        """The fencing check before every write: ClaimLost unless the claim file is still this writer's."""
        if self.claim is not None:
            self.claim.verify()

    def read_info(self) -> dict[str, Any]:
        """The current ``run.json`` (empty when the run has never started, or when the file is unreadable:
        a warning says so, and ``start`` moves it aside)."""
        try:
            return schema.read_info(self.info_file)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except schema.SchemaError as e:
            warn(f"{self.info_file} {e.reason}; treating the run as never started")
            return {}
        except OSError as e:
            raise StoreError(f"cannot read {self.info_file}: {e.strerror or e}") from None

    def prepare(self) -> None:
        """Create the directory, delete temporary files a killed writer left, move a broken run.json aside
        (call with the claim held)."""
        makedirs(self.path)
        remove_stale_temps(self.path)
        if self.info_file.exists():
            try:
                schema.read_info(self.info_file)
            except schema.SchemaError as e:
                why = f"{self.info_file} {e.reason}"
                warn(f"{why}; moved it to {quarantine(self.info_file, why).name}")
            except OSError:
                pass

    def write_config(self, config: Mapping[str, Any] | RunConfig) -> None:
        """Write ``config.yaml`` (the resolved config)."""
        self._check()
        d = config.to_dict() if isinstance(config, RunConfig) else dict(config)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(d, sort_keys=False))

    def start(
        self, config: Mapping[str, Any] | RunConfig, info: Mapping[str, Any], *, resume_rows: tuple[int, int]
    ) -> None:
        """Write the config and a ``running`` run.json; cut the logs to ``resume_rows`` (steps, epochs),
        dropping a partial last line (a steps.csv begun before the ``time_s`` column goes on without it).
        Raises LogMismatch when a log holds fewer whole rows than that."""
        self.prepare()
        self.write_config(config)
        if resume_rows[0]:
            self.step_columns = _resumed_columns(self.steps_file, self.step_columns)
        self._truncate(self.steps_file, self.step_columns, resume_rows[0], indexed=True)
        self._truncate(self.epochs_file, EPOCH_COLUMNS, resume_rows[1])
        self._info = {**self.read_info(), **info, "status": "running"}
        self.write_info()

    def write_info(self, **updates: Any) -> None:
        """Merge ``updates`` into run.json and replace it atomically (strict JSON: NaN and inf as null)."""
        self._check()
        self._info.update(updates)
        atomic_write_text(self.info_file, dumps_json(self._info))

    @property
    def info(self) -> dict[str, Any]:
        """The run.json fields held in memory (what the next ``write_info`` or ``start`` writes)."""
        return self._info

    @info.setter
    def info(self, value: Mapping[str, Any]) -> None:
        self._info = dict(value)

    def append_steps(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Append a block of step rows (column name -> equal-length sequence)."""
        self._append(self.steps_file, self.step_columns, rows)

    def append_epochs(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Append a block of epoch rows."""
        self._append(self.epochs_file, EPOCH_COLUMNS, rows)

    @property
    def checkpoint(self) -> Checkpoint:
        """The run's own checkpoint (``checkpoint.pt`` in its directory)."""
        return Checkpoint(self.checkpoint_file, (self,))

    def drop_checkpoint(self) -> None:
        self.checkpoint_file.unlink(missing_ok=True)

    def _append(self, path: Path, columns: Sequence[str], rows: Mapping[str, Sequence[Any]]) -> None:
        """Append whole lines: a write that fails part-way is cut back, so the file never ends mid-line.
        The claim is checked after the file is opened: a process that takes the run over later replaces the
        log (``_truncate``) before writing it, so this append then lands in the replaced file."""
        data = _format_rows(columns, rows).encode()
        try:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                self._check()  # create nothing in a directory that is no longer this process's
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666 & ~UMASK)
        except OSError as e:
            raise store_error(e, path) from None
        try:
            self._check()
            size = os.fstat(fd).st_size
            try:
                write_all(fd, data)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise store_error(e, path) from None
        finally:
            os.close(fd)

    def _truncate(self, path: Path, columns: Sequence[str], keep: int, indexed: bool = False) -> None:
        """Rewrite ``path`` as its header and first ``keep`` whole rows (rows of ``indexed`` logs must count
        0, 1, ... in their first field; every cell must read as a number, or as a split name in epochs.csv: a
        damaged row is never carried into a resumed run)."""
        header = ",".join(columns) + "\n"
        lines: list[str] = []
        if keep and path.exists():
            try:
                text = path.read_text(errors="replace")
            except OSError as e:
                raise StoreError(f"cannot read {path}: {e.strerror or e}") from None
            whole = text.split("\n")[:-1]  # the part after the last newline is a partial line
            if not whole or whole[0] + "\n" != header:
                whole = []
            for i, line in enumerate(whole[1 : keep + 1]):
                cells = line.split(",")
                if len(cells) != len(columns) or (indexed and cells[0] != str(i)) or not _cells_ok(cells):
                    break
                lines.append(line + "\n")
        if len(lines) < keep:
            raise LogMismatch(f"{path} holds {len(lines)} whole rows but the checkpoint expects {keep}")
        self._check()
        atomic_write_text(path, header + "".join(lines))
