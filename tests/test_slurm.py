"""SLURM end to end: a small digits sweep through the submitit launcher and through overshoot-bench-submit's
job array.

Needs a running cluster (``.ci/local_cluster.sh start``). Without one these tests are skipped with
the reason; with OVERSHOOT_REQUIRE_SLURM=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from overshoot.analysis import results
from overshoot.analysis.report import main as report_main
from overshoot.cli import manifest, slurm

pytestmark = pytest.mark.slurm

BENCH = [sys.executable, "-c", "from overshoot.cli.main import main; main()"]
SMALL = ["task=digits", "seed=10", "max_steps=20", "progress=lines"]
TIMEOUT_S = 240


def _cluster_problem() -> str | None:
    """Why SLURM cannot take jobs here, or None when a node is up."""
    if shutil.which("sinfo") is None:
        return "sinfo not found: install SLURM or run .ci/local_cluster.sh start"
    r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    states = {s.strip("*~#$@ ") for s in r.stdout.split()}
    if r.returncode != 0 or not states & {"idle", "mix", "alloc"}:
        detail = (r.stderr or r.stdout).strip().splitlines()
        return (
            f"no SLURM node takes jobs ({detail[0] if detail else 'no nodes'}): "
            "run .ci/local_cluster.sh start"
        )
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("OVERSHOOT_REQUIRE_SLURM") == "1":
        pytest.fail(f"OVERSHOOT_REQUIRE_SLURM=1 but {problem}")
    pytest.skip(problem)


def test_sweep_through_submitit_and_job_array(
    cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    name = f"overshoot-test-{os.getpid()}"  # both paths' jobs carry it, so cleanup cancels only these
    launcher_sweep = ["-m", "hydra/launcher=slurm_local", f"hydra.launcher.name={name}", *SMALL]
    launcher_sweep += ["optimizer=sgd,sgd_os", f"out={out}"]
    array_sweep = [*SMALL, "optimizer=adam,adam_os,radam_os,sf_adamw", f"out={out}"]  # wrapped methods too
    array_opts = ["--pack", "2", "--gpus", "0", "--cpus", "1", "--mem-gb", "0", "--time-min", "10"]
    array_opts += ["--job-name", name]

    # Both paths at once: the launcher blocks until its array ends; the submitter submits, then --wait waits.
    launcher = subprocess.Popen(
        [*BENCH, *launcher_sweep], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    submit = [str(Path(sys.executable).parent / "overshoot-bench-submit")]  # the console entry point
    try:
        array = subprocess.run(
            [*submit, "--wait", *array_opts, *array_sweep],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        launcher_log, _ = launcher.communicate(timeout=TIMEOUT_S)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        subprocess.run(["scancel", f"--name={name}"], check=False, timeout=30)
    assert array.returncode == 0, array.stdout + array.stderr
    assert "4 runs: 4 to do (missing 4), 0 skipped (none)" in array.stdout
    assert re.search(r"submitted job \d+: 4 runs in 2 array tasks \(2 per task\)", array.stdout)
    assert launcher.returncode == 0, launcher_log

    runs = results.scan([out]).runs
    assert sorted((r.info["optimizer"], r.status, r.info["steps"]) for r in runs) == [
        ("adam", "completed", 20),
        ("adam_os", "completed", 20),
        ("radam_os", "completed", 20),
        ("sf_adamw", "completed", 20),
        ("sgd", "completed", 20),
        ("sgd_os", "completed", 20),
    ]
    assert (
        manifest.summary(manifest.plan(launcher_sweep[1:]))
        == "2 runs: 0 to do (none), 2 skipped (completed 2)"
    )
    assert manifest.summary(manifest.plan(array_sweep)) == "4 runs: 0 to do (none), 4 skipped (completed 4)"

    # Relaunching submits nothing and says why; the report sees all six runs.
    capsys.readouterr()
    assert slurm.main([*array_opts, *array_sweep]) == 0
    again = capsys.readouterr().out
    assert "4 skipped (completed 4)" in again and "nothing to submit" in again
    assert report_main([str(out), "--no-figures", "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert re.search(r"\b6 completed runs\b", report) and "| digits |" in report, report[:500]


def test_time_limit_signal_reaches_the_runs_of_an_array_task(cluster: None, tmp_path: Path) -> None:
    """SLURM's time-limit SIGUSR2 (sent here at once with scancel --signal) makes the runs checkpoint."""
    out = tmp_path / "runs"
    name = f"overshoot-test-sig-{os.getpid()}"
    sweep = ["task=digits", "seed=10", "epochs=2000", "progress=lines", f"out={out}"]  # minutes
    opts = ["--gpus", "0", "--cpus", "1", "--mem-gb", "0", "--time-min", "10", "--job-name", name]
    try:
        assert slurm.main([*opts, *sweep]) == 0
        (entry,) = manifest.plan(sweep)
        deadline = time.time() + TIMEOUT_S
        while manifest.run_state(entry.path) != "running" or not (entry.path / "checkpoint.pt").exists():
            assert time.time() < deadline, "the run never started"
            time.sleep(0.5)
        subprocess.run(["scancel", "--signal=USR2", f"--name={name}"], check=True, timeout=30)
        while (state := manifest.run_state(entry.path)) == "running":
            assert time.time() < deadline, "the run did not stop"
            time.sleep(0.5)
    finally:
        subprocess.run(["scancel", f"--name={name}"], check=False, timeout=30)
    assert state == "failed"  # stopped by SIGTERM after writing a checkpoint: to do, and it resumes
    info = json.loads((entry.path / "run.json").read_text())
    assert info["steps"] > 0 and (entry.path / "checkpoint.pt").exists(), info
    logs = "".join(f.read_text() for f in (out / ".slurm").glob("*/logs/*.out"))
    assert "time limit near (SIGUSR2): asking 1 runs to checkpoint and stop" in logs, logs[-2000:]


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "slurm"


def _edited_copy(script: str, dest: Path) -> Path:
    """The sbatch script as a user of the one-node cluster edits it: no GPU, 1 CPU, no memory request."""
    lines = (SCRIPTS / script).read_text().splitlines()
    keep = [ln for ln in lines if not ln.startswith(("#SBATCH --gres", "#SBATCH --mem"))]
    edits = {"#SBATCH --cpus-per-task=": "1", "#SBATCH --time=": "00:10:00"}
    keep = [next((k + v for k, v in edits.items() if ln.startswith(k)), ln) for ln in keep]
    path = dest / script
    path.write_text("\n".join(keep) + "\n")
    return path


def _submit(script: Path, args: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run an sbatch script on the 'login node' as its header says; the id of the array it submitted."""
    r = subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return int(re.search(r"Submitted batch job (\d+)", r.stdout)[1])  # type: ignore[index]


def _wait_for(job: int) -> None:
    deadline = time.time() + TIMEOUT_S
    while subprocess.run(["squeue", "-h", "-j", str(job)], capture_output=True, text=True).stdout.strip():
        assert time.time() < deadline, f"job {job} did not end"
        time.sleep(1)


def test_sbatch_scripts_train_every_run_of_their_sweep(cluster: None, tmp_path: Path) -> None:
    """scripts/slurm/*.sbatch, copied and edited for this cluster: each submits its sweep as an array whose
    tasks train their slice of the manifest; run again, each finds nothing to do."""
    tiny = ["max_steps=20", "threads=1"]
    cases = {  # script: (task and overrides, environment, the sweep as overshoot-bench-manifest takes it)
        "paper_grid.sbatch": (
            ["digits", "+method=sgd,sgd_os_g3", "seed=10", *tiny],
            {"RUNS_PER_TASK": "2"},
            ["+sweep=paper", "task=digits", "+method=sgd,sgd_os_g3", "seed=10", *tiny],
        ),
        "tune.sbatch": (
            ["digits", "+method=adam,adam_os_g5", "lr=0.01", "seed=1", *tiny],
            {},
            ["+sweep=tune", "task=digits", "+method=adam,adam_os_g5", "lr=0.01", "seed=1", *tiny],
        ),
        "gamma_sweep.sbatch": (
            ["digits", *tiny],
            {"GAMMAS": "3", "SEEDS": "10"},
            ["optimizer=sgd_os", "gamma=0,3", "seed=10", "task=digits", *tiny],
        ),
    }
    jobs = {}
    try:
        for script, (args, env, _) in cases.items():
            out = tmp_path / script.split(".")[0]
            jobs[script] = _submit(_edited_copy(script, tmp_path), args, {**env, "OUT": str(out)}, tmp_path)
        for job in jobs.values():
            _wait_for(job)
    finally:
        for job in jobs.values():
            subprocess.run(["scancel", str(job)], check=False, timeout=30)
    logs = {f.name: f.read_text() for f in tmp_path.glob("slurm-*.out")}
    assert len(logs) == 5, logs  # paper: 2 runs in 1 task; tune and gamma: 1 run per task
    for script, (args, env, sweep) in cases.items():
        out = tmp_path / script.split(".")[0]
        plan = manifest.plan([*sweep, f"out={out}"])
        assert manifest.summary(plan) == "2 runs: 0 to do (none), 2 skipped (completed 2)", (script, logs)
        again = subprocess.run(
            ["bash", str(tmp_path / script), *args],
            cwd=tmp_path,
            env=os.environ | env | {"OUT": str(out)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0 and "nothing to submit" in again.stdout, again.stdout + again.stderr


def test_sbatch_script_passes_the_time_limit_signal_to_its_run(cluster: None, tmp_path: Path) -> None:
    """The SIGTERM that ``#SBATCH --signal=B:TERM@120`` sends the batch shell (sent here at once) reaches the
    run, which checkpoints and stops."""
    out = tmp_path / "runs"
    script = _edited_copy("gamma_sweep.sbatch", tmp_path)
    env = {"GAMMAS": "3", "SEEDS": "10", "OUT": str(out)}
    job = _submit(script, ["digits", "epochs=2000", "threads=1"], env, tmp_path)  # 2 runs, 2 array tasks
    try:
        deadline = time.time() + TIMEOUT_S
        while len(list(out.glob("digits/*/*/checkpoint.pt"))) < 2:
            assert time.time() < deadline, "the runs never started"
            time.sleep(0.5)
        subprocess.run(["scancel", "--batch", "--signal=TERM", str(job)], check=True, timeout=30)
        _wait_for(job)
    finally:
        subprocess.run(["scancel", str(job)], check=False, timeout=30)
    runs = [json.loads(f.read_text()) for f in out.glob("digits/*/*/run.json")]
    assert [r["status"] for r in runs] == ["failed", "failed"], (
        runs
    )  # stopped after a checkpoint: they resume
    assert all(r["steps"] > 0 for r in runs) and len(list(out.glob("digits/*/*/checkpoint.pt"))) == 2
