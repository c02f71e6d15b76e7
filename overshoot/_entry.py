"""The ``overshoot-bench`` console script: the CLI, with a Ctrl-C while it is still importing (torch takes
seconds) ending in one line and exit status 130 instead of a traceback."""

from __future__ import annotations

import os
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


def _exit_interrupted() -> NoReturn:
    """One line, exit status 130, at once: a half-imported torch left to the interpreter's shutdown can be
    interrupted again there and end the process by the signal instead."""
    print("overshoot-bench: interrupted while starting; nothing was written", file=sys.stderr, flush=True)
    os._exit(130)


def main() -> None:
    """Import and run ``overshoot.cli.main``."""
    try:
        from overshoot.cli import main as cli_main
    except BaseException as e:
        if not _interrupted(e):
            raise
        _exit_interrupted()
    try:
        cli_main()
    except KeyboardInterrupt:  # before the CLI's own handler is in place (it covers training)
        _exit_interrupted()


if __name__ == "__main__":
    main()
