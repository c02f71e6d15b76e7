"""``overshoot-bench-tune``: every method tuned on one budget, selected on validation, compared on held-out
seeds.

A study is one directory ``STUDY`` for one task:

    overshoot-bench -m +sweep=tune task=housing out=STUDY/tuning     # the same grid for every method
    overshoot-bench-tune select STUDY    # per method, the best setting on validation -> STUDY/selection.json
    overshoot-bench-tune rerun STUDY     # selected and untuned settings on held-out seeds -> STUDY/heldout
    overshoot-bench-tune report STUDY --out DIR   # savings, Table 1, time-to-target, sensitivity figure

Selection and the report are :mod:`overshoot.analysis.tuning`'s (selection reads the validation rows of
``epochs.csv`` only); this module trains. The held-out runs are the
selected settings (``tuned``) and the settings of the untuned preset with the same protocol (``untuned``: the
tuning runs' task options, epochs, max_steps, with every tuned axis back at the preset's value) on seeds that
no tuning run used, trained as populations through :func:`overshoot.train.population.run_sweep`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from overshoot.common.files import atomic_write_text
from overshoot.config import methods
from overshoot.config.schema import config_hash
from overshoot.store.writer import run_path

# -- held-out re-runs --------------------------------------------------------------------------------------


def _override_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_override_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{k}:{_override_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides_for(config: Mapping[str, Any], omit: Iterable[str] = ()) -> list[str]:
    """Command-line overrides that compose to the resolved ``config`` (hyperparameters in ``omit`` left to
    the preset)."""
    skip = set(omit)
    o = [f"task={config['task']}"]
    if config.get("optimizer_target"):  # a user's optimizer: its class, family and arguments
        o += [
            "optimizer=custom",
            f"optimizer.target={_override_value(config['optimizer_target'])}",
            f"optimizer.family={config['family']}",
            f"optimizer.name={config['optimizer']}",
        ]
        if config.get("optimizer_kwargs"):
            o.append(f"optimizer.kwargs={_override_value(dict(config['optimizer_kwargs']))}")
    else:
        o.append(f"optimizer={config['optimizer']}")
    o.append(f"preset={config['preset']}")
    if methods.is_overshoot(str(config["optimizer"])):
        o.append(f"gamma={_override_value(float(config['gamma']))}")
    o.append(f"seed={int(config['seed'])}")
    o += [f"{k}={_override_value(v)}" for k, v in config["hparams"].items() if k not in skip]
    o += [f"task.{k}={_override_value(v)}" for k, v in config["task_options"].items() if k != "name"]
    o += [
        f"max_steps={_override_value(config['max_steps'])}",
        f"drop_last={_override_value(config.get('drop_last', True))}",
        f"precision={config['precision']}",
        f"log.distance={_override_value(config['log_distance'])}",
        f"log.base_loss={_override_value(config['log']['base_loss'])}",
        f"log.window={int(config['log']['window'])}",
        f"data.root={_override_value(config['data']['root'])}",
        f"out={_override_value(config['out'])}",
        f"device={_override_value(config['device'])}",
        f"threads={_override_value(config['threads'])}",
        f"progress={_override_value(config['progress'])}",
        f"checkpoint_every={_override_value(float(config['checkpoint_every']))}",
        "population=true",
    ]
    return o


def heldout_configs(
    selection: Mapping[str, Any],
    out: Path,
    seeds: Sequence[int] | None = None,
    untuned_preset: str | None = None,
    settings: Sequence[str] = (),
) -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """The composed configs of the held-out runs (tuned and untuned arm of every selected method at every
    seed of ``seeds``, by default the paper's held-out seeds, into ``out``), each with its family, and the
    manifest rows (arm, method, seed, path relative to ``out``)."""
    from overshoot.analysis.tuning import ARMS, HELDOUT_SEEDS, TuningError
    from overshoot.config.compose import compose, resolve

    seeds = HELDOUT_SEEDS if seeds is None else seeds

    clash = sorted(set(seeds) & set(selection["tuning_seeds"]))
    if clash:
        raise TuningError(
            f"held-out seeds {clash} were used for tuning: pick other seeds (--seeds 10,20,...)"
        )
    cfgs, rows = [], []
    by_hash: dict[str, Any] = {}
    for method, m in selection["methods"].items():
        base = {**m["config"], "out": str(out), **_settings(settings)}
        for arm in ARMS:
            omit = selection["axes"] if arm == "untuned" else ()
            template = None
            for seed in seeds:
                want = {**base, "seed": int(seed)}
                if arm == "untuned" and untuned_preset:
                    want["preset"] = untuned_preset
                if template is None:
                    cfg = template = compose(overrides_for(want, omit))
                else:
                    cfg = copy.deepcopy(template)
                    cfg.seed = int(seed)
                run = resolve(cfg)
                if arm == "tuned" and config_hash(run) != config_hash(want):
                    raise RuntimeError(f"{method}: the re-run config differs from the selected trial's")
                path = run_path(out, run)
                h = config_hash(run)
                if h not in by_hash:
                    by_hash[h] = cfg
                    cfgs.append((str(m["family"]), cfg))
                rows.append(
                    {
                        "arm": arm,
                        "method": method,
                        "seed": int(seed),
                        "path": str(path.relative_to(out)),
                        "hparams": run.to_dict()["hparams"],
                    }
                )
    return cfgs, rows


def _settings(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` settings of how runs are watched (device, threads, progress, checkpoint_every)."""
    from overshoot.analysis.tuning import TuningError

    allowed = {"device": str, "threads": str, "progress": str, "checkpoint_every": float}
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in allowed or not value:
            raise TuningError(f"--set {item!r}: give one of {', '.join(allowed)} as key=value")
        out[key] = int(value) if key == "threads" and value.isdigit() else allowed[key](value)
    return out


def rerun_study(
    study: Path,
    seeds: Sequence[int] | None = None,
    families: Sequence[str] = tuple(methods.FAMILIES),
    untuned_preset: str | None = None,
    settings: Sequence[str] = (),
    dry_run: bool = False,
) -> int:
    """Train the held-out runs of ``study`` of ``families`` on ``seeds`` (default: the paper's; resumable,
    completed runs are skipped); writes heldout.json, which lists every family's runs (so runs of one family
    each may go in parallel). Returns the worst exit code."""
    from overshoot.analysis.tuning import HELDOUT_SEEDS, TuningError

    seeds = HELDOUT_SEEDS if seeds is None else seeds
    sel_file = study / "selection.json"
    if not sel_file.exists():
        raise TuningError(f"{sel_file} is missing: run overshoot-bench-tune select {study} first")
    selection = json.loads(sel_file.read_text())
    out = study / "heldout"
    pairs, rows = heldout_configs(selection, out, seeds, untuned_preset, settings)
    cfgs = [cfg for family, cfg in pairs if family in families]
    manifest_file = study / "heldout.json"
    old = json.loads(manifest_file.read_text()) if manifest_file.exists() else {"runs": []}
    new = {(x["arm"], x["method"], x["seed"]) for x in rows}
    keep = [x for x in old["runs"] if (x["arm"], x["method"], x["seed"]) not in new]
    atomic_write_text(
        manifest_file, json.dumps({"seeds": sorted(set(seeds)), "runs": keep + rows}, indent=2) + "\n"
    )
    print(f"held-out: {len(rows)} runs ({len(pairs)} distinct configs) into {out}", flush=True)
    if dry_run:
        return 0
    from overshoot.train.sweep import run_sweep

    return max(run_sweep(cfgs), default=0)


# -- command line -----------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``overshoot-bench-tune``."""
    p = argparse.ArgumentParser(
        prog="overshoot-bench-tune",
        description="Tune every method of the paper grid with the same budget, select on validation, re-run "
        "on held-out seeds and report tuned against untuned. A STUDY is a directory whose tuning/ holds the "
        "runs of `overshoot-bench -m +sweep=tune ... out=STUDY/tuning`.",
        epilog="The steps in order: select STUDY, rerun STUDY, report STUDY --out DIR. "
        "`overshoot-bench-tune COMMAND --help` lists a command's options.",
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", title="commands")
    study_help = "the study directory (its tuning/ holds the tune sweep's runs)"
    s = sub.add_parser("select", help="pick each method's best tuning setting on validation")
    s.add_argument("study", type=Path, help=study_help)
    r = sub.add_parser("rerun", help="train the selected and the untuned settings on held-out seeds")
    r.add_argument("study", type=Path, help=study_help)
    r.add_argument("--seeds", type=_ints, default=None, help="held-out seeds (default 10,...,100)")
    r.add_argument(
        "--family", choices=tuple(methods.FAMILIES), action="append", help="only this family (repeatable)"
    )
    r.add_argument("--untuned-preset", default=None, help="preset of the untuned arm (default: the tuning's)")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="device, threads, progress or checkpoint_every for the re-runs",
    )
    r.add_argument(
        "--dry-run", action="store_true", help="write heldout.json and list the runs; train nothing"
    )
    o = sub.add_parser(
        "report", help="write the tuned-vs-untuned comparison (report.md, report.html, CSV, LaTeX, figure)"
    )
    o.add_argument("study", type=Path, help=study_help)
    o.add_argument("--out", type=Path, required=True, help="the directory the report goes to")
    o.add_argument("--command", default="", help="the commands that produced the study, quoted in the report")
    o.add_argument("--note", default="", help="a protocol note for the report (e.g. a shortened schedule)")
    a = p.parse_args(argv)
    if a.cmd is None:  # a bare call: the usage with the commands, not argparse's "required: cmd"
        p.print_help(sys.stderr)
        return 2
    if not a.study.is_dir():
        return _error(f"no study directory {a.study}: train the tuning sweep into {a.study}/tuning")
    from overshoot.analysis.tuning import TuningError, report_study, select_study

    try:
        if a.cmd == "select":
            sel = select_study(a.study)
            for method, m in sel["methods"].items():
                print(
                    f"{method}: {m['selected']} val {sel['metric']} {m['score']:.5g}"
                    + (f" (at the grid edge: {m['edge']})" if m["edge"] else "")
                )
            print(f"selection: {a.study / 'selection.json'}")
            return 0
        if a.cmd == "rerun":
            fams = a.family or list(methods.FAMILIES)
            return rerun_study(a.study, a.seeds, fams, a.untuned_preset, a.set, a.dry_run)
        paths = report_study(a.study, a.out, a.command, a.note)
        print("\n".join(map(str, paths)))
        return 0
    except (TuningError, FileNotFoundError) as e:
        return _error(str(e))


def _error(message: str) -> int:
    """A study or a setting the command cannot use: one line on stderr; the exit status 2."""
    print(f"overshoot-bench-tune: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
