"""Run one short default run (overshoot-bench threads=1 progress=none max_steps=3) and report whether, and from
where, torch._dynamo is imported. Usage: python results/optim_imports/default_run_probe.py [overrides...]"""

import sys, traceback, importlib.abc


class F(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch._dynamo":
            print("torch._dynamo imported from:", file=sys.stderr)
            traceback.print_stack(limit=14)
        return None


sys.meta_path.insert(0, F())
from overshoot.cli.main import main

sys.argv = [
    "overshoot-bench",
    "threads=1",
    "progress=none",
    "max_steps=3",
    "out=/tmp/dynprobe_runs",
    *sys.argv[1:],
]
try:
    main()
except SystemExit:
    pass
print("torch._dynamo in sys.modules at the end:", "torch._dynamo" in sys.modules, file=sys.stderr)
