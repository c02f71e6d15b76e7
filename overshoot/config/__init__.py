"""What a run is: the typed run config, the method registry, Hydra composition and checks, run.json's
schema."""
