"""A task of your own: two interleaved half-moons (scikit-learn, no download) and a small MLP."""

import torch
from overshoot_tasks.base import TensorTask
from sklearn.datasets import make_moons
from torch import nn


class Moons(TensorTask):
    """Binary classification of 2-D points; 80 % of the points train, 20 % test."""

    metric = "accuracy"

    def __init__(self, n=2000, noise=0.2, hidden=64, device="cpu", dtype=torch.float32):
        x, y = make_moons(n, noise=noise, random_state=0)
        x, y = torch.tensor(x, dtype=dtype), torch.tensor(y)
        k = int(0.8 * n)
        super().__init__({"x": x[:k], "y": y[:k]}, {"test": {"x": x[k:], "y": y[k:]}}, device, dtype)
        self.hidden = hidden

    def build_model(self):
        return self._place(nn.Sequential(nn.Linear(2, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 2)))
