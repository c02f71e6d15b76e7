"""The run store: one directory per run, written atomically, read back by reports and sweeps.

A run directory holds ``config.yaml`` (the resolved config), ``steps.csv`` (one row per optimizer step),
``epochs.csv`` (validation/test metrics per epoch), ``run.json`` (status and summary) and, while the run is
unfinished, ``checkpoint.pt``. Every file except the two CSV logs is replaced atomically; the logs are
appended in whole lines (a failed append is cut back) and cut back to the last checkpoint when a run
resumes, so a reader never sees a row that a resumed run will not reproduce.

The claim (one writer per run directory, fencing): :mod:`~overshoot.store.claim`; the run's files
(logs, run.json, checkpoints): :mod:`~overshoot.store.writer`. Every file goes through
:mod:`overshoot.common.files`.
"""
