"""The CPU's own kernels by default; `--bitwise` for a run whose bytes must equal another x86 machine's.

torch picks its kernels by what the CPU offers (AVX512 on one host, AVX2 on another), and kernels of different
vector widths sum in different orders, so two hosts write runs that differ in the last digits (seeds move the
default table far more). `--bitwise` asks each library that chooses for one code path every x86 machine of this
project's kind has: ATen (torch's element-wise and reduction kernels) and oneDNN (the classifiers' exact GELU) for
their AVX2 code, MKL for its AVX2 branch; and since MKL runs code of its own on AMD CPUs for some product shapes
whatever branch it is asked for, every CPU matrix product is rewritten into shapes it computes alike on Intel and
AMD (neutral_products.py). That replaces torch's CPU product kernels for the whole process and costs a few per cent
on AMD hosts and up to a third on AVX512 Intel hosts (benchmarks/bench_bitwise.py), so it is an option.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

from .errors import PipelineError

log = logging.getLogger(__name__)

# ATen's own kernels (read at the first operator call), MKL's conditional numerical reproducibility branch (read
# when MKL starts; STRICT keeps its results independent of how the arrays happen to be aligned in memory) and the
# widest instructions oneDNN's generated code may use (read at its first primitive).
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}


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


def use_bitwise_kernels() -> None:
    """`--bitwise`: pin ATen's, oneDNN's and MKL's kernels (`PINNED`) and rewrite this process's CPU matrix products
    into vendor-neutral shapes. Called before anything is computed (the libraries read the variables once)."""
    if not has_avx2():
        raise PipelineError(f"--bitwise pins the AVX2 kernels of x86 CPUs, and this {platform.machine()} CPU has "
                            "none: remove --bitwise (the run then uses this CPU's own kernels)")
    os.environ.update(PINNED)
    from .neutral_products import use_neutral_products  # imports torch: after the variables it reads

    use_neutral_products()
    log.info("bitwise mode: AVX2 kernels and vendor-neutral matrix products (docs/stages.md)")


def in_effect() -> dict[str, Any]:
    """The kernel state this process computes with, read from the libraries where they tell it: whether the products
    are rewritten, ATen's capability, MKL's and oneDNN's settings ("" where the library chose), and where MKL's own
    products run, the CPU's vendor (MKL runs other code on AMD and Intel CPUs). Anything computed, and cached, from
    floating-point results depends on it."""
    import torch

    from . import neutral_products

    state: dict[str, Any] = {"neutral_products": neutral_products.active(),
                             "aten": torch.backends.cpu.get_cpu_capability(),
                             "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
                             "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}
    if not state["neutral_products"]:
        state["cpu_vendor"] = first_processor().get("vendor_id", platform.machine())
    return state
