"""The command-line and cluster entry points: overshoot-bench, -tune, -manifest, -submit."""
