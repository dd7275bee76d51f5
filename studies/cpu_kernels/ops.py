#!/usr/bin/env python3
"""Which of the kernel families that differ between CPUs a stage runs: a count of the ATen operators a script
calls (through torch's dispatcher), for those whose names match the families of scripts/kernel_fingerprint.py.

    python3 studies/cpu_kernels/ops.py main.py sigmoid --run-dir RUN --max-steps 2
    python3 studies/cpu_kernels/ops.py calculate_metrics.py sigmoid --run-dir RUN --num-prompts 8
"""

from __future__ import annotations

import collections
import runpy
import sys

from torch.utils._python_dispatch import TorchDispatchMode

WATCHED = ("sqrt", "exp", "log", "erf", "tanh", "pow", "mm", "gelu", "sigmoid", "norm", "adam")


class OperatorCount(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def main() -> int:
    script, sys.argv = sys.argv[1], sys.argv[1:]
    with OperatorCount() as mode:
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit:
            pass
    print({name: mode.counts[name] for name in sorted(mode.counts) if any(w in name for w in WATCHED)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
