"""Test-wide settings: one CPU thread (the models are tiny; extra threads only contend on a busy CI box)."""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
