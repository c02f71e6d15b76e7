"""``overshoot-bench``: train one benchmark run (or a Hydra multirun of them) into the run store.

    overshoot-bench                                   # the default: digits, AdamO at the default gamma
    overshoot-bench task=cifar optimizer=adam_os gamma=5 seed=10
    overshoot-bench -m optimizer=sgd,sgd_os seed=10,20

Exit status: 0 when every run completed (or was already complete, or is running elsewhere: a run another
live process holds is not trained twice), 1 when a run failed or diverged, 2 on bad input (one line says
what), 130 on SIGINT and 143 on SIGTERM (the run resumes when relaunched).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import string
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn, TextIO

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig

from overshoot.common.extras import MissingExtra, require
from overshoot.common.provenance import git_rev
from overshoot.config.compose import CONFIG_DIR, CONFIG_SEARCH_PATH, compose

# Options with which Hydra prints and exits without running a job: no git revision to record.
PRINT_ONLY = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
HELP = {"--help", "-h"}


def _choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _settings() -> list[str]:
    import yaml

    base = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text()) or {}
    groups = [d.name for d in CONFIG_DIR.iterdir() if d.is_dir() and d.name != "hydra"]
    return sorted({*(k for k in base if k not in ("defaults", "hydra")), *groups})


def hydra_error_line(e: Exception) -> str:
    """One line for a Hydra composition error: what is unknown and the valid choices."""
    import difflib
    import re

    text = str(e)
    m = re.search(r"Could not find '([^'/]+)/([^']+)'", text)
    if m and _choices(m.group(1)):
        group, name = m.group(1), m.group(2)
        choices = _choices(group)
        near = difflib.get_close_matches(name, choices, n=1)
        hint = f" (did you mean {group}={near[0]}?)" if near else ""
        return f"unknown {group}={name}{hint}: choose one of {', '.join(choices)}"
    m = re.search(r"Could not (?:override|append to|delete(?: from)?) '([^']+)'", text)
    if m or "Key '" in text:
        key = m.group(1) if m else re.search(r"Key '([^']+)'", text).group(1)  # type: ignore[union-attr]
        top = key.split(".")[0]
        settings = _settings()
        near = difflib.get_close_matches(top, settings, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        return f"unknown setting {key}{hint}: valid settings are {', '.join(settings)}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class _ArgumentError(Exception):
    """A command-line option argparse refuses (``--foo``), raised instead of its usage text and exit."""


def _argument_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    raise _ArgumentError(message)


class _PipeSafe:
    """A text stream that turns quiet once its reader is gone (``overshoot-bench ... | head -2``): the rest of
    the output goes to /dev/null, so a closed pipe never changes how a run ends or its exit status."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _quiet(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._quiet()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._quiet()
            with contextlib.suppress(OSError):
                self._stream.flush()  # the buffered rest, into /dev/null

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _ignore_sigint() -> None:
    """Ignore further Ctrl-Cs while this process says how it ended and exits (a second one would otherwise
    print a traceback from wherever it lands)."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def help_text(args: Sequence[str]) -> str | None:
    """The ``--help`` page of a command line of overrides and ``--help``, as Hydra prints it, from one
    composition (Hydra's own help also lists every config group, which this template does not show); None
    where Hydra's help is needed: another flag, a template that uses Hydra's generated parts, or overrides
    that do not compose (Hydra then words the error)."""
    if not HELP.intersection(args) or any(a.startswith("-") and a not in HELP for a in args):
        return None
    try:
        cfg = compose([a for a in args if a not in HELP], with_hydra=True)
        template = string.Template(str(cfg.hydra.help.template))
    except Exception:
        return None
    if template.get_identifiers():  # $FLAGS_HELP, $APP_CONFIG_GROUPS, $CONFIG, ...
        return None
    return template.substitute()


@contextlib.contextmanager
def _argparse_errors_raise() -> Iterator[None]:
    """Within: argparse's usage errors raise ``_ArgumentError`` (worded by ``main``) instead of exiting."""
    error = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _argument_error  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = error  # type: ignore[method-assign]


def main() -> None:
    """Console entry point of ``overshoot-bench``."""
    try:
        _require_launcher_extra(sys.argv[1:])
    except MissingExtra as e:
        print(f"overshoot-bench: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    text = help_text(sys.argv[1:])
    if text is not None:
        out = _PipeSafe(sys.stdout)  # overshoot-bench --help | head
        out.write(f"{text}\n")
        out.flush()
        return
    from overshoot.train.sweep import Session  # after help: the sweep machinery reads the store

    if not PRINT_ONLY.intersection(sys.argv[1:]):
        git_rev()  # the revision of the code this process loaded, even if the checkout moves during a sweep
    own_errors = "HYDRA_FULL_ERROR" not in os.environ  # then Hydra raises its errors and we word them
    if own_errors:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    _register_sweeper()
    session = Session()
    stdout = sys.stdout
    sys.stdout = _PipeSafe(stdout)  # type: ignore[assignment]
    quiet_hydra = logging.getLogger("hydra")  # its launcher's "\t#1 : ..." job headers

    @hydra.main(config_path=CONFIG_SEARCH_PATH, config_name="config", version_base=None)
    def job(cfg: DictConfig) -> None:
        quiet_hydra.setLevel(logging.WARNING)  # again per job: each job's logging config may reset it
        session.job(cfg)

    quiet_hydra.setLevel(logging.WARNING)
    try:
        with _argparse_errors_raise():
            job()
        session.finish()
    except KeyboardInterrupt:
        _ignore_sigint()
        print("overshoot-bench: interrupted; relaunch the same command to resume", file=sys.stderr)
        sys.exit(session.outcomes.interrupted or 130)  # a SIGINT during setup gives 130 too
    except _ArgumentError as e:
        print(f"overshoot-bench: error: {e} (overshoot-bench --help lists the options)", file=sys.stderr)
        session.outcomes.codes.append(2)
    except HydraException as e:
        if not own_errors:
            raise
        print(f"overshoot-bench: error: {hydra_error_line(e)}", file=sys.stderr, flush=True)
        session.outcomes.codes.append(2)
    except OSError as e:  # Hydra creating a multirun's folder under an unwritable out=
        from overshoot.common.files import os_error_line

        where = e.filename or "the run store"
        print(f"overshoot-bench: error: {os_error_line(e, where)}: choose a writable out=", file=sys.stderr)
        session.outcomes.codes.append(2)
    except (ValueError, OverflowError) as e:  # Hydra's override parser: an integer of over 4,300 digits
        if not own_errors:
            raise
        print(f"overshoot-bench: error: {_first_line(e)}", file=sys.stderr, flush=True)
        session.outcomes.codes.append(2)
    except Exception as e:  # Hydra failing on a value of the wrong shape (task=[1,2]): still one line
        if not own_errors:
            raise
        started = bool(session.outcomes.codes or session.outcomes.counts)
        print(
            f"overshoot-bench: error: {type(e).__name__}: {_first_line(e)} (check the command line; "
            "HYDRA_FULL_ERROR=1 shows the traceback)",
            file=sys.stderr,
            flush=True,
        )
        session.outcomes.codes.append(1 if started else 2)
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            for line in session.summary():
                print(f"overshoot-bench: {line}", flush=True)
        sys.stdout = stdout
        if own_errors:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.exit(session.outcomes.exit_code)


def _first_line(e: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if "integer string conversion" in text:
        return "an integer on the command line has over 4,300 digits: no setting takes one that large"
    return text if len(text) <= 300 else text[:297] + "..."


def _register_sweeper() -> None:
    """Make the sweeper of configs/hydra/sweeper/overshoot.yaml known to Hydra, which finds plugins by
    scanning the hydra_plugins namespace: an editable install's import hook hides it from that scan."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # its scan re-imports Hydra's own plugins: subclass the classes it keeps
    from hydra_plugins.overshoot_sweeper.overshoot_sweeper import OvershootSweeper

    plugins.register(OvershootSweeper)


def _require_launcher_extra(args: list[str]) -> None:
    """MissingExtra when the command line picks the SLURM launcher without the [slurm] extra."""
    for a in args:
        key, _, value = a.lstrip("+~").partition("=")
        if key == "hydra/launcher" and value.startswith("slurm"):
            require("slurm", f"hydra/launcher={value}")


if __name__ == "__main__":
    main()
