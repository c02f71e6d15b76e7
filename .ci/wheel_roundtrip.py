"""Build the wheel, install it (core only) in a fresh venv, and run --help, a task and the report from it.

    python .ci/wheel_roundtrip.py                  # CI: pip resolves the core dependencies as README says
    python .ci/wheel_roundtrip.py --offline -- max_steps=60   # the test: nothing downloaded

torch (and torchvision, and their own dependencies) are reused from the environment running this script
instead of being installed again: the fresh venv sees them through a .pth file pointing at a folder of
links to exactly those distributions, the way a user's venv has the torch they installed first. With
``--offline`` the same is done for every core dependency of the wheel and pip may not download anything, so
a dependency the code needs but the wheel does not declare fails the import. Run from the checkout's root;
the commands run in an empty folder, so nothing is imported from the checkout. Exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRA_MODULES = ("transformers", "datasets", "peft", "submitit", "tensorboard", "wandb")


def closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """The installed distributions of ``requirements`` and of everything they require (with the extras
    each requirement names), by normalised name."""
    found: dict[str, md.Distribution] = {}
    extras_done: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        wanted = {""} | set(req.extras)
        if all((name, e) in extras_done for e in wanted):
            continue
        dist = found.get(name) or md.distribution(req.name)  # PackageNotFoundError: a core dependency missing
        found[name] = dist
        for sub in map(Requirement, dist.requires or []):
            for extra in wanted - {e for n, e in extras_done if n == name}:
                if sub.marker is None or sub.marker.evaluate({"extra": extra}):
                    todo.append(sub)
        extras_done.update((name, e) for e in wanted)
    return found


def link_overlay(dists: dict[str, md.Distribution], overlay: Path) -> None:
    """Symlink every top-level entry (packages, modules, .dist-info, .libs) of ``dists`` into ``overlay``."""
    overlay.mkdir(parents=True)
    for dist in dists.values():
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = base / top
            if src.exists() and not (overlay / top).exists():
                (overlay / top).symlink_to(src)


def run(cmd: list[str], cwd: Path, env: dict[str, str], expect: int = 0) -> str:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    print(f"$ {' '.join(cmd)}  [rc {r.returncode}, {time.perf_counter() - t:.1f} s]", flush=True)
    if r.returncode != expect:
        print(r.stdout[-4000:], r.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"wheel round trip: {cmd[0]} exited {r.returncode}, expected {expect}")
    return r.stdout + r.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--offline", action="store_true", help="reuse every core dependency; download nothing")
    p.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temporary folder)")
    p.add_argument("run_args", nargs="*", help="extra overshoot-bench settings for the task run")
    a = p.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="overshoot-wheel-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    t0 = time.perf_counter()
    run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(work / "dist")], cwd=work, env=env)  # fmt: skip
    wheel = next((work / "dist").glob("overshoot_bench-*.whl"))
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    core = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Requires-Dist:")]
    core = [r for r in core if "extra ==" not in r]
    reused = closure(core if a.offline else ["torch", "torchvision"])
    link_overlay(reused, work / "overlay")

    venv = work / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    run([base_python, "-m", "venv", str(venv)], cwd=work, env=env)
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    Path(purelib, "_overshoot_ci_reused.pth").write_text(str(work / "overlay") + "\n")
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    # Python < 3.12 seeds a venv with an old setuptools, which would shadow the reused one torch requires.
    run([str(bin_dir / "python"), "-m", "pip", "uninstall", "-y", "-q", "setuptools"], cwd=work, env=env)
    install = [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)]
    run(install + (["--no-index"] if a.offline else []), cwd=work, env=env)
    print(
        f"wheel built and installed in {time.perf_counter() - t0:.0f} s ({len(reused)} distributions reused)"
    )

    here = work / "run"
    here.mkdir()
    check = (
        "import importlib.util as u, overshoot, sys; "
        f"bad = [m for m in {EXTRA_MODULES!r} if u.find_spec(m)]; "
        "assert not bad, f'the core install has {bad}'; "
        f"assert overshoot.__file__.startswith({str(venv)!r}), overshoot.__file__"
    )
    run([str(bin_dir / "python"), "-c", check], cwd=here, env=env)
    out = run(["overshoot-bench", "--help"], cwd=here, env=env)
    for needle in ("Usage:", "Tasks", "Optimizers", "Examples:", "Exit codes:"):
        assert needle in out, f"--help lacks {needle!r}"
    t = time.perf_counter()
    run(["overshoot-bench", "out=runs", *a.run_args], cwd=here, env=env)
    print(f"default task from the wheel: {time.perf_counter() - t:.1f} s wall")
    run(["overshoot-bench-report", "runs", "--out", "report"], cwd=here, env=env)
    assert any((here / "report").iterdir()), "the report wrote nothing"
    for args, extra in (
        (["task=gpt2_text"], "[text]"),
        (["-m", "hydra/launcher=slurm", "seed=1,2"], "[slurm]"),
        (["log.tensorboard=true"], "[loggers]"),
    ):
        msg = run(["overshoot-bench", "out=runs", *args], cwd=here, env=env, expect=2)
        assert f"install the {extra} extra" in msg, msg
    # The SLURM tools from the core install: the manifest needs no extra, the job array names [slurm].
    run(["overshoot-bench-manifest", "--summary", "out=runs", "seed=1,2"], cwd=here, env=env)
    msg = run(["overshoot-bench-submit", "--gpus", "0", "out=runs", "seed=3"], cwd=here, env=env, expect=2)
    assert "install the [slurm] extra" in msg, msg
    print(f"wheel round trip passed in {time.perf_counter() - t0:.0f} s")
    if a.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
