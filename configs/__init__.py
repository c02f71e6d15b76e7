"""overshoot-bench's Hydra config tree, installed as the package ``overshoot_configs``."""
