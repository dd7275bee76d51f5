"""The CPU kernels are pinned to one code path before anything is computed (sentiment_dpo/kernels.py)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from sentiment_dpo import kernels

FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx {extra}\n\nprocessor\t: 1\nflags\t\t: fpu avx2 fma\n"


@pytest.mark.parametrize("extra, expected", [("avx2 fma avx512f", True), ("avx2", False), ("fma", False)])
def test_avx2_is_read_from_the_first_processors_flags(tmp_path, monkeypatch, extra, expected):
    monkeypatch.setattr(kernels.platform, "machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(FLAGS.format(extra=extra))
    assert kernels.has_avx2(cpuinfo) is expected


def test_an_arm_machine_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(kernels.platform, "machine", lambda: "aarch64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(FLAGS.format(extra="avx2 fma"))
    assert not kernels.has_avx2(cpuinfo)


def test_the_users_own_setting_wins(monkeypatch):
    monkeypatch.setattr(kernels, "has_avx2", lambda: True)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv(kernels.NEUTRAL_PRODUCTS, "0")
    kernels.pin_cpu_kernels()
    assert kernels.in_effect() == {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX2,STRICT",
                                   "ONEDNN_MAX_CPU_ISA": "AVX2", kernels.NEUTRAL_PRODUCTS: "0"}


# A matrix product and exp (MKL), the exact GELU (oneDNN), a LayerNorm and softmax (ATen's vectorised kernels): their
# bytes tell which code paths ran. Run as a stage of a script runs: after importing every stage, from the entry
# point's stage call.
PROBE = """
import hashlib, torch

def work(config=None):
    torch.manual_seed(0)
    a, b, x = torch.randn(256, 384), torch.randn(384, 512), torch.randn(32, 384)
    y = torch.nn.functional.gelu(torch.nn.LayerNorm(384)(x)).softmax(-1).exp().detach()
    digest = hashlib.sha256((a @ b).numpy().tobytes() + y.numpy().tobytes()).hexdigest()
    print(torch.backends.cpu.get_cpu_capability(), digest)

{call}
"""
DIRECT = "work()"
THROUGH_THE_ENTRY_POINT = """
from sentiment_dpo.stages import evaluate, generate, pairs, pipeline, train
from sentiment_dpo.experiments import sweep
from sentiment_dpo.cli import main_for
from sentiment_dpo.config import PairsConfig
main_for(PairsConfig, "probe", work, argv=[])
"""


def unpinned_environment(**env: str) -> dict[str, str]:
    """This process's variables without the suite's pin (conftest), plus `env`."""
    return {k: v for k, v in os.environ.items() if k not in kernels.PINNED} | env


def probe(call: str, **env: str) -> str:
    return subprocess.run([sys.executable, "-c", PROBE.format(call=call)], env=unpinned_environment(**env),
                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not kernels.has_avx2(), reason="pinning applies to x86 machines with AVX2")
def test_a_stage_runs_on_the_pinned_kernels():
    pinned_at_start = probe(DIRECT, **kernels.PINNED)
    assert pinned_at_start.startswith("AVX2 ")
    assert probe(THROUGH_THE_ENTRY_POINT) == pinned_at_start  # the package's imports computed nothing before the pin


def fingerprint(**env: str) -> dict[str, str]:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "kernel_fingerprint.py"), "--json"],
                            env=unpinned_environment(**env), capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout)


@pytest.mark.skipif(not kernels.has_avx2(), reason="pinning applies to x86 machines with AVX2")
def test_the_fingerprint_names_the_library_whose_kernels_changed():
    """scripts/kernel_fingerprint.py: the same settings give the same hashes; MKL's other branch changes the MKL
    families' (matrix products) and leaves ATen's alone."""
    pinned = fingerprint()
    assert fingerprint() == pinned
    other = fingerprint(MKL_CBWR="COMPATIBLE,STRICT")
    assert other["matmul (MKL)"] != pinned["matmul (MKL)"]
    assert other["layer norm (ATen)"] == pinned["layer norm (ATen)"]
    assert other["fused AdamW (ATen)"] == pinned["fused AdamW (ATen)"]
