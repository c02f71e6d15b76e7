"""The ``overshoot-bench`` console script: the CLI, with a Ctrl-C while it is still importing (torch takes
seconds) ending in one line and exit status 130 instead of a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn


def _interrupted(e: BaseException | None) -> bool:
    """Whether ``e`` is a KeyboardInterrupt or was caused by one (Python wraps one raised inside, e.g., a
    dataclass's ``__set_name__`` in a RuntimeError)."""
    seen = 0
    while e is not None and seen < 20:
        if isinstance(e, KeyboardInterrupt):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _exit_interrupted(started: bool = False) -> NoReturn:
    """One line, exit status 130, at once: a half-imported torch left to the interpreter's shutdown can be
    interrupted again there and end the process by the signal instead. Further Ctrl-Cs are ignored."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    what = "relaunch the same command to resume" if started else "nothing was written"
    with contextlib.suppress(OSError, ValueError):
        print(
            f"overshoot-bench: interrupted{'' if started else ' while starting'}; {what}",
            file=sys.stderr,
            flush=True,
        )
    os._exit(130)


def main() -> None:
    """Import and run ``overshoot.cli.main.main``."""
    try:
        from overshoot.cli.main import main as cli_main
    except BaseException as e:
        if not _interrupted(e):
            raise
        _exit_interrupted()
    try:
        cli_main()
    except KeyboardInterrupt:  # outside the CLI's own handler (a second Ctrl-C as it takes the first)
        _exit_interrupted(started=True)


if __name__ == "__main__":
    main()
