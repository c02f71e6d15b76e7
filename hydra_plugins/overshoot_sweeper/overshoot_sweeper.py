"""The sweeper of ``overshoot-bench -m`` (``configs/hydra/sweeper/overshoot.yaml``): Hydra's basic sweeper
with each job's config composed once, in process.

Hydra's basic sweeper composes every job's config from the config files twice (once to check the batch,
once in the launcher), with its defaults list and every file read again. Here the config files are composed
once per distinct choice of config groups (``task=``, ``optimizer=``, ``+method=``, ...); each job's value
overrides (``seed=``, ``gamma=``, ``lr=``...) are applied to a copy of that config, and its ``hydra`` node is
completed the way Hydra's own composition completes it. The checked config is the one the launcher gets.
The SLURM launcher takes the same configs (the jobs are composed in this process and sent to the cluster).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict


class ComposingLoader:
    """A config loader that composes each job of a sweep from a cached composition of its config-group
    choices; everything else goes to Hydra's loader. A job composed by the batch check (:meth:`check`) is
    handed to the launcher's request for it, not composed again."""

    def __init__(self, loader: ConfigLoader) -> None:
        self._loader = loader
        self._parser = OverridesParser.create(config_loader=loader)
        self._bases: dict[tuple[str, ...], bytes] = {}  # pickled: unpickling is faster than deepcopy
        self._checked: dict[tuple[str, ...], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_loader", "_parser", "_bases", "_checked"):
            raise AttributeError(name)  # while unpickled (a SLURM job), before __dict__ is restored
        return getattr(self._loader, name)

    def __getstate__(self) -> dict[str, Any]:
        """What a pickled copy holds (the SLURM launcher sends one with every job): the group compositions,
        not the checked jobs' configs (each job composes its own config from them, on its node)."""
        return {**self.__dict__, "_checked": {}}

    def _is_group_choice(self, o: Override) -> bool:
        """Whether ``o`` picks a config group's option (Hydra's defaults list takes it), not a value."""
        repo = self._loader.repository  # type: ignore[attr-defined]
        return not isinstance(o.value(), dict) and bool(repo.group_exists(o.key_or_group))

    def check(self, master_config: DictConfig, sweep_overrides: list[str]) -> None:
        """Compose this job (raising what Hydra raises for a job that cannot be composed) and keep its config
        for the launcher's :meth:`load_sweep_config`."""
        self._checked[tuple(sweep_overrides)] = self._compose(master_config, list(sweep_overrides))

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """What Hydra's ``load_sweep_config`` returns for this job: the config the batch check composed (each
        handed out once: the launcher edits it), else a new composition."""
        cfg = self._checked.pop(tuple(sweep_overrides), None)
        return cfg if cfg is not None else self._compose(master_config, list(sweep_overrides))

    def _compose(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        parsed = self._parser.parse_overrides(sweep_overrides)
        if any(o.is_hydra_override() for o in parsed):  # not from the basic sweeper: Hydra's own way
            return self._loader.load_sweep_config(master_config, sweep_overrides)
        picks = tuple(str(o.input_line) for o in parsed if self._is_group_choice(o))
        if picks not in self._bases:
            hydra_overrides = list(OmegaConf.to_container(master_config.hydra.overrides.hydra))  # type: ignore[arg-type]
            base = self._loader.load_configuration(
                config_name=master_config.hydra.job.config_name,
                overrides=hydra_overrides + list(picks),
                run_mode=RunMode.RUN,
            )
            self._bases[picks] = pickle.dumps(base)
        cfg = pickle.loads(self._bases[picks])
        values = [o for o in parsed if o.input_line not in picks]
        type(self._loader)._apply_overrides_to_config(values, cfg)  # type: ignore[attr-defined]
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in parsed]
            conf = cfg.hydra.job.config.override_dirname
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=parsed, kv_sep=conf.kv_sep, item_sep=conf.item_sep, exclude_keys=conf.exclude_keys
            )
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg


class OvershootSweeper(BasicSweeper):
    """Hydra's basic sweeper (the same jobs, batches and checks) whose jobs are composed by
    :class:`ComposingLoader`: the batch check composes each job once, the launcher gets that config."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.loader = ComposingLoader(hydra_context.config_loader)
        context = HydraContext(config_loader=self.loader, callbacks=hydra_context.callbacks)  # type: ignore[arg-type]
        super().setup(hydra_context=context, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job of the batch (a job that cannot be composed fails the sweep before any runs),
        keeping each config for the launcher."""
        assert self.config is not None
        for overrides in batch:
            self.loader.check(self.config, list(overrides))
