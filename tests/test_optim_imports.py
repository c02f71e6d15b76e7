"""SGDO and AdamO run on the CPU without importing torch._dynamo (whose import costs seconds)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import torch
from overshoot.optim import SGDO, AdamO

def run(make):
    model = torch.nn.Linear(3, 2).double()
    opt = make(model.parameters())
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]})
    for _ in range(3):
        opt.zero_grad()
        model(torch.ones(4, 3, dtype=torch.float64)).sum().backward()
        opt.step()
    with opt.base_weights():
        pass
    opt.load_state_dict(opt.state_dict())

run(lambda ps: SGDO(ps, lr=0.1, momentum=0.9, gamma=3.0))
run(lambda ps: AdamO(ps, lr=1e-2, delay=1))
run(lambda ps: AdamO(ps, lr=1e-2, delay=1, exact=True, amsgrad=True, foreach=False))
run(lambda ps: AdamO(ps, lr=torch.tensor(1e-2, dtype=torch.float64), delay=1, capturable=True))
print(sorted(m for m in sys.modules if m.startswith("torch._dynamo")))
"""


def test_sgdo_adamo_do_not_import_dynamo() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_torch_path_once_dynamo_is_imported() -> None:
    """Once torch._dynamo is imported (e.g. by torch.compile), the methods go through torch's wrappers."""
    script = SCRIPT.replace("import torch\n", "import torch\nimport torch._dynamo\n", 1)
    script += "print(torch.optim.Optimizer.zero_grad.__wrapped__.__dynamo_disable is not None)\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stdout
