"""overshoot-bench's Hydra sweeper plugin (found by Hydra in the hydra_plugins namespace)."""
