"""The paper's benchmark tasks (installed as ``overshoot_tasks``)."""
