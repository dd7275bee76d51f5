"""One CPU code path on every Intel x86 machine, so a run's numbers are the same bytes on an AVX512 and an AVX2 host.

torch picks its kernels by what the CPU offers (AVX512 on one host, AVX2 on another), and kernels of different
vector widths sum in different orders: the default pipeline's `hinge` then read p_positive 0.630 on one host and
0.628 on another (studies/first_run_and_seeds). Three libraries choose: ATen (torch's own element-wise and
reduction kernels), oneDNN (the exact GELU of the BERT-style classifiers) and MKL (matrix products, and exp, log
and sqrt of a tensor); each is asked for its AVX2 code, which every x86 machine of this project's kind has.
MKL's AVX2 branch is reproducible on Intel CPUs only: on an AMD one MKL runs its own code for small products,
`linear`, exp and log whatever branch it is asked for (shown on a real AMD EPYC). Its COMPATIBLE branch gives the
same bytes on both (`MKL_CBWR=COMPATIBLE,STRICT`), at about twice the training time. So instead every CPU matrix
product is rewritten into shapes MKL computes alike on both vendors (neutral_products.py), at a few per cent of the
time (studies/cpu_kernels).
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

from .errors import PipelineError

log = logging.getLogger(__name__)

# ATen's own kernels (read at the first operator call), MKL's conditional numerical reproducibility branch (read
# when MKL starts; STRICT keeps its results independent of how the arrays happen to be aligned in memory) and the
# widest instructions oneDNN's generated code may use (read at its first primitive); and whether the products are
# rewritten into the shapes MKL computes alike on Intel and AMD CPUs (this package's, read by `pin_cpu_kernels`).
NEUTRAL_PRODUCTS = "SENTIMENT_DPO_NEUTRAL_PRODUCTS"
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2", NEUTRAL_PRODUCTS: "1"}


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
    """Pin ATen's, oneDNN's and MKL's kernels (`PINNED`), before this process computes anything, and rewrite its CPU
    matrix products into vendor-neutral shapes. A variable the user has set wins (`ATEN_CPU_CAPABILITY=avx512
    MKL_CBWR=AUTO ONEDNN_MAX_CPU_ISA=ALL SENTIMENT_DPO_NEUTRAL_PRODUCTS=0` on an AVX512 machine: its own widest
    kernels, faster, and bytes of its own). Once a library has computed, its choice is made; the run's timings.json
    records the settings it ran with (`in_effect`)."""
    if not has_avx2():
        return
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
    neutral = os.environ[NEUTRAL_PRODUCTS]
    if neutral not in ("0", "1"):
        raise PipelineError(f"{NEUTRAL_PRODUCTS}={neutral!r} is not a setting: use 1 (products computed alike on "
                            "Intel and AMD CPUs, the default) or 0 (MKL's own, a little faster)")
    if neutral == "1":
        from .neutral_products import use_neutral_products  # imports torch: after the variables it reads

        use_neutral_products()
    log.debug("CPU kernels: %s", ", ".join(f"{name}={os.environ[name]}" for name in PINNED))


def in_effect() -> dict[str, str]:
    """The kernel settings this process runs with: each pinned variable's value ("" where unset, the library's own
    choice). Anything computed, and cached, from floating-point results depends on them."""
    return {name: os.environ.get(name, "") for name in PINNED}
