"""The package's layers and import graph.

Each folder of overshoot/ is one layer; bottom to top: optim and common, tasks (the top-level tasks/ folder,
installed as ``overshoot_tasks``), config, store, analysis, train, cli, and the package root
(``overshoot/__init__.py``, ``overshoot/bench.py``). An import points to its own layer or below, wherever it
sits (inside functions too); tasks/ imports only overshoot.common and overshoot.optim of the package. No
module of overshoot/ or tasks/ is part of an import circle, counting the imports under ``if TYPE_CHECKING:``
too (a circle of annotations is still two modules that cannot be read apart). mypy reads the tasks as the
package they are installed as, without a symlink (.ci/mypy/run)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"overshoot": ROOT / "overshoot", "overshoot_tasks": ROOT / "tasks"}  # import name -> folder
# Bottom to top; the layers of one entry are on one floor (neither imports the other: checked below).
LAYERS = (
    ("optim", "common"),
    ("tasks",),
    ("config",),
    ("store",),
    ("analysis",),
    ("train",),
    ("cli",),
    ("root",),
)
RANK = {name: floor for floor, names in enumerate(LAYERS) for name in names}
TASKS_MAY_IMPORT = {"tasks", "optim", "common"}


def module_files() -> dict[str, Path]:
    """Every module of overshoot/ and tasks/ by its import name (tasks/x.py is overshoot_tasks.x)."""
    out: dict[str, Path] = {}
    for top, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def layer(module: str) -> str:
    """The layer of a module of overshoot/ or tasks/: its folder under overshoot/ (``root`` for the modules
    beside overshoot/__init__.py), ``tasks`` for tasks/."""
    parts = module.split(".")
    if parts[0] == "overshoot_tasks":
        return "tasks"
    if len(parts) > 1 and (SOURCES["overshoot"] / parts[1]).is_dir():
        return parts[1]
    return "root"


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    typing_only: bool  # under ``if TYPE_CHECKING:``


def imports(modules: dict[str, Path]) -> list[Import]:
    """Every import of one module of ``modules`` by another, anywhere in its file. ``from a import b`` counts
    as an import of ``a.b`` when that is a module, else of ``a``; relative imports are resolved."""
    out: list[Import] = []
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for stmt in block.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    out.append(Import(mod, name, node.lineno, id(node) in typing_only))
    return out


def import_graph(modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module -> the modules of overshoot/ and tasks/ it imports (TYPE_CHECKING imports included)."""
    modules = module_files() if modules is None else modules
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports(modules):
        graph[imp.source].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def upward(modules: dict[str, Path] | None = None) -> list[str]:
    """The imports that break the layering, as 'file:line: a (layer) imports b (layer)'."""
    modules = module_files() if modules is None else modules
    bad = []
    for imp in imports(modules):
        src, dst = layer(imp.source), layer(imp.target)
        if (
            RANK[dst] > RANK[src]
            or (src != dst and RANK[dst] == RANK[src])
            or (src == "tasks" and dst not in TASKS_MAY_IMPORT)
        ):
            path = modules[imp.source]
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            bad.append(f"{where}:{imp.line}: {imp.source} ({src}) imports {imp.target} ({dst})")
    return bad


def test_every_module_is_in_a_layer() -> None:
    folders = {p.name for p in SOURCES["overshoot"].iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(RANK), f"folders of overshoot/ that are no layer: {sorted(folders - set(RANK))}"
    assert {layer(m) for m in module_files()} <= set(RANK)


def test_imports_point_down() -> None:
    bad = upward()
    assert not bad, "imports of a higher layer (move the function down):\n" + "\n".join(bad)


def test_no_import_circles() -> None:
    found = cycles(import_graph())
    assert not found, f"import circles (TYPE_CHECKING imports counted): {found}"


def test_the_checks_see_lazy_relative_and_typing_imports(tmp_path: Path) -> None:
    g = import_graph()
    assert "overshoot.train.engine" in g["overshoot.train.single"]  # inside a function
    assert "overshoot_tasks.base" in g["overshoot_tasks.digits"]  # `from .base import ...`
    assert any(i.typing_only for i in imports(module_files()))
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    # a made-up tree: a lazy upward import, a tasks module reaching the store, a circle through TYPE_CHECKING
    files = {
        "overshoot.store.w": "def f():\n    from overshoot.train import e\n",
        "overshoot.train.e": "import typing\nif typing.TYPE_CHECKING:\n    from overshoot.train import d\n",
        "overshoot.train.d": "from overshoot.train import e\n",
        "overshoot_tasks.t": "from overshoot.store import w\n",
    }
    modules = {}
    for name, text in files.items():
        modules[name] = tmp_path / f"{name}.py"
        modules[name].write_text(text)
    assert [b.split(": ", 1)[1] for b in upward(modules)] == [
        "overshoot.store.w (store) imports overshoot.train.e (train)",
        "overshoot_tasks.t (tasks) imports overshoot.store.w (store)",
    ]
    assert cycles(import_graph(modules)) == [["overshoot.train.d", "overshoot.train.e"]]


def test_no_symlinks_in_the_checkout() -> None:
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-s"], capture_output=True, text=True, check=False
    ).stdout
    if not tracked:
        pytest.skip("not a git checkout")
    links = [line.split("\t", 1)[1] for line in tracked.splitlines() if line.startswith("120000 ")]
    assert not links, f"symlinks in the checkout: {links}"


@pytest.mark.slow
def test_mypy_sees_the_task_annotations(tmp_path: Path) -> None:
    """A wrong use of a Task attribute is a type error: mypy reads overshoot_tasks as real types
    (.ci/mypy/run), not as Any."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """\
            from overshoot_tasks.base import Task


            def name_length(task: Task) -> int:
                return task.name  # a str: mypy must say so
            """
        )
    )
    env = {**os.environ, "MYPY_CACHE_DIR": str(ROOT / ".mypy_cache")}
    got = subprocess.run(
        ["bash", str(ROOT / ".ci" / "mypy" / "run"), str(probe)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    out = got.stdout + got.stderr
    assert got.returncode == 1, out
    assert 'probe.py:5: error: Incompatible return value type (got "str", expected "int")' in out, out
    assert "import-not-found" not in out and "import-untyped" not in out, out


if __name__ == "__main__":  # print the layering's breaches and the circles
    print("\n".join(upward()) or "no upward imports")
    print(cycles(import_graph()) or "no circles")
    sys.exit(0)
