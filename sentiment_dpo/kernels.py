"""One CPU code path on every x86 machine, so a run's numbers are the same bytes on an Intel and an AMD host.

torch and its MKL pick their kernels by what the CPU offers (AVX512 on one host, AVX2 on another), and kernels of
different vector widths sum in different orders: the default pipeline's `hinge` then read p_positive 0.630 on one
host and 0.628 on another (studies/first_run_and_seeds). Asking both for their AVX2 kernels, which every x86
machine of this project's kind has, gives them the same arithmetic.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)

# ATen's own kernels (read at the first operator call) and MKL's conditional numerical reproducibility branch (read
# when MKL starts; STRICT keeps its results independent of how the arrays happen to be aligned in memory).
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}


def first_processor(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's block of a Linux machine's /proc/cpuinfo (model name, vendor, family, model, flags, ...);
    empty elsewhere."""
    if not cpuinfo.exists():
        return {}
    info = {}
    for line in cpuinfo.read_text().split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the first processor of a Linux x86 machine lists AVX2 and FMA (other machines: unknown, so no)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return {"avx2", "fma"} <= set(first_processor(cpuinfo).get("flags", "").split())


def pin_cpu_kernels() -> None:
    """Ask torch and MKL for their AVX2 kernels, before this process computes anything. A variable the user has set
    wins (ATEN_CPU_CAPABILITY=avx512 MKL_CBWR=AUTO on an AVX512 machine: its own widest kernels, faster). Once
    torch has run an operator its choice is made; the run's timings.json records the capability it used."""
    if not has_avx2():
        return
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
    log.debug("CPU kernels: %s", ", ".join(f"{name}={os.environ[name]}" for name in PINNED))
