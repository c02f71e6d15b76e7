"""The console scripts other than ``overshoot-bench`` answer ``--help`` and bad input before any heavy import:
neither torch nor pandas, numpy, matplotlib, scipy or plotly is in ``sys.modules`` once the command has exited
(each runs in a fresh interpreter, called as its console script calls it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import distribution
from pathlib import Path

import pytest

HEAVY = ("torch", "pandas", "numpy", "matplotlib", "scipy", "plotly")
SCRIPTS = {  # the installed console scripts: name -> module:function
    e.name: e.value
    for e in distribution("overshoot-bench").entry_points
    if e.group == "console_scripts" and e.name != "overshoot-bench"  # its checks: test_overhead.py
}

CHECK = f"HEAVY = {HEAVY!r}\n" + textwrap.dedent(
    """
    import importlib, sys
    target, sys.argv = sys.argv[1], sys.argv[1:]
    module, _, func = target.partition(":")
    try:
        code = getattr(importlib.import_module(module), func)()
    except SystemExit as e:
        code = e.code
    heavy = sorted(m for m in HEAVY if m in sys.modules)
    print("HEAVY", ",".join(heavy) or "-", "EXIT", code, file=sys.stderr)
    """
)


def _run(script: str, *args: str, cwd: Path) -> tuple[str, int, str, list[str]]:
    """(the heavy modules imported, the exit status, stdout, stderr's lines before the check's) of the
    console script ``script`` called with ``args``."""
    p = subprocess.run(
        [sys.executable, "-c", CHECK, SCRIPTS[script], *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    *err, last = p.stderr.strip().splitlines() or [""]
    words = last.split()
    assert words[:1] == ["HEAVY"], p.stderr
    return words[1], int(words[3]), p.stdout, err


def test_the_scripts_are_all_here() -> None:
    assert set(SCRIPTS) == {
        "overshoot-bench-report",
        "overshoot-bench-tune",
        "overshoot-bench-manifest",
        "overshoot-bench-submit",
    }


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("overshoot-bench-report", ["--help"]),
        ("overshoot-bench-tune", ["--help"]),
        ("overshoot-bench-tune", ["select", "--help"]),
        ("overshoot-bench-tune", ["rerun", "--help"]),
        ("overshoot-bench-tune", ["report", "--help"]),
        ("overshoot-bench-manifest", ["--help"]),
        ("overshoot-bench-submit", ["--help"]),
    ],
)
def test_help_imports_nothing_heavy(script: str, args: list[str], tmp_path: Path) -> None:
    heavy, code, out, err = _run(script, *args, cwd=tmp_path)
    assert code == 0, err
    prog = " ".join([script, *args[:-1]])
    assert out.startswith(f"usage: {prog} "), out
    assert heavy == "-", f"{script} {' '.join(args)} imported {heavy}"


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("overshoot-bench-report", ["--bogus"], "unrecognized arguments: --bogus"),
        ("overshoot-bench-report", ["--format", "md,xx"], "unknown format 'xx'"),
        ("overshoot-bench-report", ["--window", "0"], "--window 0 must be a positive number of steps"),
        ("overshoot-bench-report", ["--alpha", "x"], "argument --alpha: invalid float value: 'x'"),
        ("overshoot-bench-tune", ["--bogus"], "unrecognized arguments: --bogus"),
        ("overshoot-bench-tune", ["rerun", "study", "--seeds", "a"], "is not a comma-separated list"),
        ("overshoot-bench-tune", ["select", "nowhere"], "no study directory nowhere"),
        ("overshoot-bench-tune", ["report", "nowhere", "--out", "x"], "no study directory nowhere"),
        ("overshoot-bench-manifest", ["--bogus"], "unrecognized arguments: --bogus"),
        ("overshoot-bench-manifest", ["nosuch=1"], "Could not override 'nosuch'"),
        ("overshoot-bench-submit", ["--bogus"], "unrecognized arguments: --bogus"),
        ("overshoot-bench-submit", ["--pack", "0"], "--pack must be at least 1"),
        ("overshoot-bench-submit", ["nosuch=1"], "Could not override 'nosuch'"),
        ("overshoot-bench-submit", ["optimizer=nope"], "Could not find 'optimizer/nope'"),
    ],
)
def test_bad_input_is_one_line_and_imports_nothing_heavy(
    script: str, args: list[str], says: str, tmp_path: Path
) -> None:
    heavy, code, out, err = _run(script, *args, cwd=tmp_path)
    assert code == 2, err
    assert not out and err, (out, err)
    # argparse's own errors come after the usage; the message itself is one line, named by the command
    assert not any(line.startswith("Traceback") for line in err), err
    assert err[-1].startswith(script) and says in err[-1], err
    if script == "overshoot-bench-report":
        assert len(err) == 1, err  # the report prints no usage: one line in all
    assert heavy == "-", f"{script} {' '.join(args)} imported {heavy}"


def test_the_report_package_exports_each_name_from_its_module() -> None:
    from overshoot.analysis import report as R

    assert sorted(R._HOME) == sorted(R.__all__)
    for name in R.__all__:
        value = getattr(R, name)
        assert value.__module__ == f"{R.__name__}.{R._HOME[name]}", name
        assert name in dir(R)
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        R.nosuch  # noqa: B018
