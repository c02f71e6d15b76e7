"""The repository's layout rules: nothing edits ``sys.path`` to find a module (the package is installed; a
script finds the modules beside it), and code outside the package uses only public names of ``overshoot``."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("scripts", "examples", ".ci")  # code that uses the package as a user would


def python_files(*folders: str) -> list[Path]:
    return sorted(f for d in folders for f in (ROOT / d).rglob("*.py") if ".venv" not in f.parts)


def path_edits(tree: ast.AST) -> list[int]:
    """Lines that change ``sys.path`` (a call on it such as insert/append, or an assignment to it)."""
    lines = []
    for node in ast.walk(tree):
        target = (
            node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
        )
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t for t in targets if isinstance(t, ast.Attribute | ast.Subscript)), None)
            if isinstance(target, ast.Subscript):
                target = target.value
        if isinstance(target, ast.Attribute) and target.attr == "path" and ast.unparse(target.value) == "sys":
            lines.append(node.lineno)
    return lines


def private_imports(tree: ast.AST) -> list[str]:
    """``from overshoot... import _name`` and ``import overshoot._x``: private names of the package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "overshoot",
            "overshoot_tasks",
        ):
            parts = [*node.module.split("."), *(a.name for a in node.names)]  # type: ignore[union-attr]
            found += [
                f"line {node.lineno}: from {node.module} import {p}" for p in parts if p.startswith("_")
            ]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ("overshoot", "overshoot_tasks") and any(
                    p.startswith("_") for p in a.name.split(".")
                ):
                    found.append(f"line {node.lineno}: import {a.name}")
    return found


def test_no_sys_path_edits() -> None:
    bad = {
        str(f.relative_to(ROOT)): lines
        for f in python_files("overshoot", "tasks", "tests", *OUTSIDE)
        if (lines := path_edits(ast.parse(f.read_text())))
    }
    assert not bad, f"sys.path edited (install the package; import siblings by name): {bad}"


def test_code_outside_the_package_imports_only_public_names() -> None:
    bad = {
        str(f.relative_to(ROOT)): found
        for f in python_files(*OUTSIDE)
        if (found := private_imports(ast.parse(f.read_text())))
    }
    assert not bad, f"private overshoot names imported: {bad}"


def test_the_checks_catch_what_they_forbid() -> None:
    code = "import sys\nsys.path.insert(0, 'x')\nsys.path += ['y']\nsys.path[:0] = ['z']\nsys.path = []\n"
    assert sorted(path_edits(ast.parse(code))) == [2, 3, 4, 5]
    code = "from overshoot.cli.main import _git_rev\nfrom overshoot.optim import _triton\n"
    code += "import overshoot.cli._x\n"
    code += "from overshoot.common.provenance import git_rev\nfrom overshoot import bench\n"
    assert len(private_imports(ast.parse(code))) == 3


@pytest.mark.slow
def test_benchmarks_and_research_drivers_start() -> None:
    """Each benchmark starts as ``python scripts/bench/NAME.py`` and each research driver as ``python -m
    scripts.research.NAME`` from the checkout root (imports resolved, --help printed), as their docstrings
    say."""
    commands = {f"scripts/bench/{f.name}": [str(f)] for f in python_files("scripts/bench")}
    commands |= {
        f"scripts/research/{f.name}": ["-m", f"scripts.research.{f.stem}"]
        for f in python_files("scripts/research")
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, *cmd, "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, cmd in commands.items()
    }
    failed = {}
    for name, p in procs.items():
        out, _ = p.communicate(timeout=300)
        if p.returncode != 0 or "usage:" not in out:
            failed[name] = out[-1000:]
    assert len(commands) >= 9 and not failed, failed


# The top level a user reads (the design's list, and what conventions add: docs/, examples/, .ci/, a license,
# the citation and the documentation site's config).
TOP_LEVEL = {"pyproject.toml", "README.md", "configs", "overshoot", "tasks", "scripts", "results", "tests"}
TOP_LEVEL |= {"docs", "examples", ".ci", "LICENSE", "CITATION.cff", "mkdocs.yml", ".gitignore"}
# Hydra loads a sweeper or launcher only from the hydra_plugins namespace package (its plugin convention).
TOP_LEVEL |= {"hydra_plugins"}


def test_top_level_is_the_users() -> None:
    """Nothing else is tracked at the top: benchmarks and research drivers live under scripts/."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {f.split("/", 1)[0] for f in files.splitlines()}
    assert top <= TOP_LEVEL, f"not in the user's top level: {sorted(top - TOP_LEVEL)}"
    assert {"slurm", "paper", "bench", "research"} <= {d.name for d in (ROOT / "scripts").iterdir()}


def test_readme_is_short_and_its_links_resolve() -> None:
    """README is the front page (about 200 lines; the rest is the documentation site in docs/), and every
    relative link and image in it names a file of the checkout."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    targets = re.findall(r"\]\(([^)#\s]+)[^)]*\)", text) + re.findall(r'<img src="([^"]+)"', text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert len(local) >= 10 and not [t for t in local if not (ROOT / t).exists()], local
