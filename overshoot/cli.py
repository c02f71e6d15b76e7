"""``overshoot-bench``: train one benchmark run (or a Hydra multirun of them) into the run store.

    overshoot-bench                                   # the default: digits, AdamO gamma 5
    overshoot-bench task=cifar optimizer=adam_os gamma=5 seed=10
    overshoot-bench -m optimizer=sgd,sgd_os seed=10,20

Exit status: 0 when every run completed (or was already complete, or is running elsewhere: a run another
live process holds is not trained twice), 1 when a run failed or diverged, 2 on bad input (one line says
what), 130 on SIGINT and 143 on SIGTERM (the run resumes when relaunched).
"""

from __future__ import annotations

import os
import sys

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig

from overshoot.config import CONFIG_DIR, CONFIG_SEARCH_PATH
from overshoot.extras import MissingExtra, require
from overshoot.provenance import git_rev
from overshoot.store import os_error_line
from overshoot.sweep import Session


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


def main() -> None:
    """Console entry point of ``overshoot-bench``."""
    try:
        _require_launcher_extra(sys.argv[1:])
    except MissingExtra as e:
        print(f"overshoot-bench: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    git_rev()  # the revision of the code this process loaded, even if the checkout moves during a sweep
    own_errors = "HYDRA_FULL_ERROR" not in os.environ  # then Hydra raises its errors and we word them
    if own_errors:
        os.environ["HYDRA_FULL_ERROR"] = "1"
    session = Session()

    @hydra.main(config_path=CONFIG_SEARCH_PATH, config_name="config", version_base=None)
    def job(cfg: DictConfig) -> None:
        session.job(cfg)

    try:
        job()
        session.finish()
    except KeyboardInterrupt:
        print("overshoot-bench: interrupted; relaunch the same command to resume", file=sys.stderr)
        sys.exit(session.outcomes.interrupted or 130)  # a SIGINT during setup gives 130 too
    except HydraException as e:
        if not own_errors:
            raise
        print(f"overshoot-bench: error: {hydra_error_line(e)}", file=sys.stderr, flush=True)
        session.outcomes.codes.append(2)
    except OSError as e:  # Hydra creating a multirun's folder under an unwritable out=
        where = e.filename or "the run store"
        print(f"overshoot-bench: error: {os_error_line(e, where)}: choose a writable out=", file=sys.stderr)
        session.outcomes.codes.append(2)
    finally:
        for line in session.summary():
            print(f"overshoot-bench: {line}", flush=True)
    sys.exit(session.outcomes.exit_code)


def _require_launcher_extra(args: list[str]) -> None:
    """MissingExtra when the command line picks the SLURM launcher without the [slurm] extra."""
    for a in args:
        key, _, value = a.lstrip("+~").partition("=")
        if key == "hydra/launcher" and value.startswith("slurm"):
            require("slurm", f"hydra/launcher={value}")


if __name__ == "__main__":
    main()
