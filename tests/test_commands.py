"""Every command that README.md, docs/, results/README.md and scripts/*/README.md quote for a user to run:
each script it names exists (and takes the options quoted), each console command takes the options quoted,
and each ``overshoot-bench`` setting composes and resolves (the first and last run of a sweep), without
training anything."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import re
import shlex
from functools import cache
from pathlib import Path

import pytest

from overshoot.cli import manifest
from overshoot.config import compose as config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES += [ROOT / "scripts" / "README.md", *sorted((ROOT / "scripts").glob("*/README.md"))]
STARTS = ("overshoot-bench", "python scripts/", "python -m scripts.", "bash scripts/", "bash .ci/")
EXECUTABLE = re.compile(r"scripts/\S+\.(?:sh|sbatch)\b")  # a script run by its path
# Placeholders the pages use, and a value that stands for each when the command is checked.
PLACEHOLDERS = {"task=T": "task=digits", "TASK": "digits"}


def _commands(text: str) -> list[str]:
    """The commands of one page: each line of a ```bash block (continuations joined, comments and leading
    VAR=value settings dropped, ``&&`` split) and each backticked command inline."""
    found: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found += [part for part in line.split("&&")]
    found += re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
    out = []
    for cmd in found:
        cmd = " ".join(re.sub(r"\s+#.*$", "", cmd).split())
        cmd = re.sub(r"^(?:[A-Z_]+=\S*\s+)+", "", cmd)  # OVERSHOOT_DATA=... python ...
        synopsis = re.search(r"[<\[]|\.\.\.", cmd)  # a usage line (<line>, [--x], RUNS...), not a command
        if (cmd.startswith(STARTS) or EXECUTABLE.match(cmd)) and not synopsis:
            out.append(cmd)
    return out


def _all_commands() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), c) for p in PAGES for c in _commands(p.read_text())]


@cache
def _entry_point_help(name: str, sub: str | None = None) -> str:
    """The --help text of a console command (of its subcommand ``sub``), run in this process."""
    (ep,) = importlib.metadata.entry_points(group="console_scripts", name=name)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        ep.load()([*([sub] if sub else []), "--help"])
    return buf.getvalue()


def _split_options(tokens: list[str], help_text: str) -> tuple[list[str], list[str]]:
    """The options of ``tokens`` not in ``help_text``, and the positional tokens (an option's value skipped
    when its help line shows one: ``--out OUT``)."""
    unknown, positional, i = [], [], 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("-") and t not in ("-m",):
            flag = t.split("=", 1)[0]
            m = re.search(rf"(?:^|[\s,]){re.escape(flag)}(?:[ =]([A-Z_]+))?", help_text)
            if m is None:
                unknown.append(flag)
            elif m.group(1) and "=" not in t:
                i += 1
        else:
            positional.append(t)
        i += 1
    return unknown, positional


def _check_settings(overrides: list[str]) -> None:
    """The overrides compose (Hydra) and resolve (the run config's checks), for the first and the last run
    of the sweep they make."""
    settings = [PLACEHOLDERS.get(o, o) for o in overrides if o not in ("-m", "--help")]
    settings = [o for o in settings if not o.lstrip("+~").startswith("hydra")]
    jobs = manifest.expand(settings)
    for job in {0: jobs[0], -1: jobs[-1]}.values():
        cfg = config.compose([o for o in job if not o.lstrip("+~").startswith("hydra")])
        if "-m" in overrides:
            config.drop_sweep_gamma(cfg)  # a sweep's baseline listed with gammas trains once, without one
        config.resolve(cfg)


def test_the_pages_quote_commands() -> None:
    """The collector finds the commands (a test of the test: an empty list would pass everything)."""
    commands = [c for _, c in _all_commands()]
    assert len(commands) >= 40, commands
    assert "bash scripts/paper/make_all.sh runs paper" in commands
    assert "python scripts/bench/time_grid.py --task housing" in commands
    assert any(c.startswith("overshoot-bench-submit ") for c in commands)
    assert _commands("```bash\nX=1 overshoot-bench a=1 \\\n  b=2  # c\n```\n`overshoot-bench <line>`") == [
        "overshoot-bench a=1 b=2"
    ]


@pytest.mark.parametrize(
    ("page", "command"), _all_commands(), ids=lambda x: x if len(x) < 70 else x[:67] + "..."
)
def test_quoted_command_runs_under_its_path(page: str, command: str) -> None:
    tokens = shlex.split(command)
    if tokens[0].startswith("scripts/"):  # an executable script, run by its path
        tokens = ["bash", *tokens]
    if tokens[0] in ("python", "bash"):
        if tokens[1] == "-m":
            script = ROOT / (tokens[2].replace(".", "/") + ".py")
            rest = tokens[3:]
        else:
            script, rest = ROOT / tokens[1], tokens[2:]
        if script.stem == "NAME":  # the pattern of a folder's scripts
            assert list(script.parent.glob("*.py")), f"{page}: {command}: no scripts in {script.parent}"
            return
        assert script.is_file(), f"{page}: {command}: no {script.relative_to(ROOT)}"
        source = script.read_text()
        flags = [t.split("=", 1)[0] for t in rest if t.startswith("--") and t != "--help"]
        missing = [f for f in flags if f'"{f}"' not in source]
        assert not missing, f"{page}: {command}: {script.name} has no option {missing}"
        return
    name = tokens[0]
    if name == "overshoot-bench":
        if "--config-dir" in tokens:  # a config folder of the user's (examples/: tests/test_custom.py)
            return
        _check_settings(tokens[1:])
        return
    sub = tokens[1] if name == "overshoot-bench-tune" and len(tokens) > 1 else None
    unknown, positional = _split_options(tokens[1 + bool(sub) :], _entry_point_help(name, sub))
    assert not unknown, f"{page}: {command}: {name} {sub or ''} has no option {unknown}"
    if name in ("overshoot-bench-manifest", "overshoot-bench-submit") and positional:
        _check_settings(positional)
