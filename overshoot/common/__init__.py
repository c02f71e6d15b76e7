"""The bottom layer, below the tasks: atomic files, optional dependencies, provenance."""
