"""Run one short default run (overshoot-bench threads=1 progress=none max_steps=3) and report whether, and
from where, torch._dynamo is imported. Usage: python results/optim_imports/default_run_probe.py [overrides]"""

import contextlib
import importlib.abc
import sys
import traceback
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _Watch(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "torch._dynamo":
            print("torch._dynamo imported from:", file=sys.stderr)
            traceback.print_stack(limit=14)
        return None


def main() -> None:
    sys.meta_path.insert(0, _Watch())
    from overshoot.cli.main import main as bench

    extra = sys.argv[1:]
    args = ["threads=1", "progress=none", "max_steps=3", "out=/tmp/dynprobe_runs"]
    sys.argv = ["overshoot-bench", *args, *extra]
    with contextlib.suppress(SystemExit):
        bench()
    print("torch._dynamo in sys.modules at the end:", "torch._dynamo" in sys.modules, file=sys.stderr)


if __name__ == "__main__":
    main()
