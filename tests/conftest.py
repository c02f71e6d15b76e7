"""Test-wide settings: one CPU thread (the models are tiny; extra threads only contend on a busy CI box)."""

import os
from pathlib import Path

import pytest
import torch
from fixtures import write_housing_csv, write_mnist_like

os.environ.setdefault("OMP_NUM_THREADS", "1")
# The fixtures are small files in the real formats, not the published datasets: compare no sizes or checksums
# with those (tests/test_integrity.py turns the comparison on where it tests it).
os.environ.setdefault("OVERSHOOT_DATA_VERIFY", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with generated California-housing and Fashion-MNIST files in the real formats (a test
    module may define its own ``root``)."""
    r = tmp_path_factory.mktemp("data")
    write_housing_csv(r / "california-housing" / "cal_housing.csv")
    write_mnist_like(r / "fashion-mnist", seed=1)
    return r
