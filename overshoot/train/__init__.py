"""Training: the driver and its two backends (single runs, populations), a run's life cycle, sweeps."""
