"""The ``overshoot-bench`` console script: the CLI, with a Ctrl-C while it is still importing (torch takes
seconds) ending in one line and exit status 130 instead of a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    """Import and run ``overshoot.cli.main``."""
    try:
        from overshoot.cli import main as cli_main
    except KeyboardInterrupt:
        print("overshoot-bench: interrupted while starting; nothing was written", file=sys.stderr)
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
