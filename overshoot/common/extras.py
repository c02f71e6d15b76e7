"""The optional parts of overshoot-bench and the pip extra that installs each one.

The core install runs the default task, the MLP and vision tasks, the optimizers and the report; the GPT-2
tasks, the SLURM launcher, the loggers and the Lion/Schedule-Free optimizers need an extra (pyproject.toml).
``require`` turns a missing package into one line that names the extra to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

# extra -> the importable modules it provides (pyproject.toml's [project.optional-dependencies])
EXTRAS: dict[str, tuple[str, ...]] = {
    "text": ("transformers", "datasets", "peft"),
    "slurm": ("submitit", "hydra_plugins.hydra_submitit_launcher"),
    "loggers": ("tensorboard", "wandb"),
    "optimizers": ("lion_pytorch", "schedulefree"),
}


# what needs an extra, as the command line names it -> (the extra, the modules it needs: None for all of them)
NEEDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "task=gpt2_qqp": ("text", None),
    "task=gpt2_text": ("text", ("transformers",)),
}

PACKAGE_OF = {
    "hydra_plugins.hydra_submitit_launcher": "hydra-submitit-launcher",
    "lion_pytorch": "lion-pytorch",
}  # where pip names differ


class MissingExtra(ValueError):
    """A feature's optional dependencies are not installed; the message names the pip extra."""


def missing(modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported."""
    out = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module set to None
            found = False
        if not found:
            out.append(m)
    return out


def require(extra: str, what: str, modules: Sequence[str] | None = None) -> None:
    """MissingExtra naming ``extra`` unless ``modules`` (default: all of the extra's) can be imported;
    ``what`` says what needs them, e.g. ``task=gpt2_text``."""
    absent = [PACKAGE_OF.get(m, m) for m in missing(EXTRAS[extra] if modules is None else modules)]
    if absent:
        raise MissingExtra(
            f"{what} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not installed: "
            f"install the [{extra}] extra: pip install 'overshoot-bench[{extra}]' (from a checkout: "
            f"pip install '.[{extra}]')"
        )


def require_for(what: str) -> None:
    """MissingExtra when ``what`` (a key of ``NEEDS``, e.g. ``task=gpt2_text``) lacks its extra's modules;
    nothing for anything else."""
    if what in NEEDS:
        extra, modules = NEEDS[what]
        require(extra, what, modules)
