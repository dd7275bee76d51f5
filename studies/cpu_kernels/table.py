#!/usr/bin/env python3
"""The study's tables from its results: for each kernel setting, each kernel family of the other CPUs against the
Intel host's, "same" or "differs"; then the same for the miniature's outputs with the pinned kernels and with MKL's
COMPATIBLE branch. First the CPUs emulated on the Intel host (run.sh), then a real AMD EPYC host (`EPYC-host`,
family 26 model 2: the fingerprint and the miniature run natively there, as the README says).

    python3 studies/cpu_kernels/table.py studies/cpu_kernels/results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SETTINGS = ("own", "avx2_mkl", "pinned", "compatible")
EMULATED = ("Haswell", "EPYC-Rome")
REAL = ("EPYC-host",)
IGNORED = ("kernels",)  # the settings themselves, the same on every CPU of a column


def load(path: Path) -> dict[str, str] | None:
    """A run's outputs, or None where it was not run."""
    if not path.exists():
        return None
    return {key: str(value) for key, value in json.loads(path.read_text()).items() if key not in IGNORED}


def table(results: Path, kind: str = "fingerprint", settings: tuple[str, ...] = SETTINGS,
          cpus: tuple[str, ...] = EMULATED) -> str:
    runs = {(setting, cpu): load(results / f"{setting}_{cpu}.{kind}.json")
            for setting in settings for cpu in ("native",) + cpus}
    header = ["output"] + [f"{setting}: {cpu}" for setting in settings for cpu in cpus]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in runs[(settings[0], "native")]:
        cells = [key]
        for setting in settings:
            host = runs[(setting, "native")][key]
            for cpu in cpus:
                if runs[(setting, cpu)] is None:
                    cells.append("not run")
                    continue
                other = runs[(setting, cpu)].get(key)
                cells.append(other if key == "torch CPU capability" else "same" if other == host else "**differs**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    results = Path(sys.argv[1])
    for cpus in (EMULATED, REAL):
        print(table(results, cpus=cpus))
        print()
        print(table(results, "miniature", ("pinned", "compatible"), cpus))
        print()
