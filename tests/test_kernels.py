"""The CPU's own kernels by default; `--bitwise` pins one code path before anything is computed
(sentiment_dpo/kernels.py), tested in processes of their own since the pin holds for a whole process."""

import json
import os
import subprocess
import sys

import pytest

from conftest import BITWISE_SUITE, ROOT
from sentiment_dpo import kernels, neutral_products

FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx {extra}\n\nprocessor\t: 1\nflags\t\t: fpu avx2 fma\n"
needs_avx2 = pytest.mark.skipif(not kernels.has_avx2(), reason="--bitwise applies to x86 machines with AVX2")


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


def test_bitwise_on_a_cpu_without_avx2_is_a_one_line_error(monkeypatch):
    from sentiment_dpo.errors import PipelineError

    monkeypatch.setattr(kernels, "has_avx2", lambda: False)
    with pytest.raises(PipelineError, match="--bitwise pins the AVX2 kernels .* remove --bitwise"):
        kernels.use_bitwise_kernels()


def test_the_suite_and_a_default_run_compute_with_the_cpus_own_kernels():
    """No kernel replaced, no variable set: what a user who imports the package gets."""
    import torch

    assert not neutral_products.active()
    assert not any(name in os.environ for name in kernels.PINNED)
    state = kernels.in_effect()
    assert state["neutral_products"] is False and state["aten"] == torch.backends.cpu.get_cpu_capability()
    assert state["cpu_vendor"] == kernels.first_processor().get("vendor_id", kernels.platform.machine())


# A matrix product and exp (MKL), the exact GELU (oneDNN), a LayerNorm and softmax (ATen's vectorised kernels): their
# bytes tell which code paths ran. Run as a stage of a script runs: after importing every stage, from the entry
# point's stage call.
PROBE = """
import hashlib, torch

def work(config=None):
    from sentiment_dpo import kernels
    torch.manual_seed(0)
    a, b, x = torch.randn(256, 384), torch.randn(384, 512), torch.randn(32, 384)
    y = torch.nn.functional.gelu(torch.nn.LayerNorm(384)(x)).softmax(-1).exp().detach()
    digest = hashlib.sha256((a @ b).numpy().tobytes() + y.numpy().tobytes()).hexdigest()
    print(kernels.in_effect()["neutral_products"], torch.backends.cpu.get_cpu_capability(), digest)

{call}
"""
DIRECT = "from sentiment_dpo.kernels import use_bitwise_kernels; use_bitwise_kernels(); work()"
THROUGH_THE_ENTRY_POINT = """
from sentiment_dpo.stages import evaluate, generate, pairs, pipeline, train
from sentiment_dpo.experiments import sweep
from sentiment_dpo.cli import main_for
from sentiment_dpo.config import PairsConfig
main_for(PairsConfig, "probe", work, argv={argv})
"""


def probe(call: str) -> str:
    return subprocess.run([sys.executable, "-c", PROBE.format(call=call)], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]


@needs_avx2
def test_bitwise_pins_the_kernels_before_the_stage_computes_and_a_default_stage_does_not():
    pinned_at_start = probe(DIRECT)
    assert pinned_at_start.startswith("True AVX2 ")
    # the package's imports computed nothing before the pin
    assert probe(THROUGH_THE_ENTRY_POINT.format(argv=["--bitwise"])) == pinned_at_start
    default = probe(THROUGH_THE_ENTRY_POINT.format(argv=[]))
    assert default.startswith("False ") and default.split()[1] == kernels_capability()


def kernels_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


@needs_avx2
def test_the_neutral_products_hold_in_a_bitwise_process():
    """tests/bitwise/ on the bitwise kernels, in a process of its own (the pin holds for the whole process)."""
    suite = str(ROOT / "tests" / "bitwise")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite],
                            env=os.environ | {BITWISE_SUITE: "1"}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def fingerprint(*args: str, **env: str) -> dict[str, str]:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "kernel_fingerprint.py"), "--json", *args],
                            env=os.environ | env, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(result.stdout)


@needs_avx2
def test_the_fingerprint_names_the_library_whose_kernels_changed():
    """scripts/kernel_fingerprint.py: the same settings give the same hashes; MKL's other branch changes the MKL
    families' (matrix products) and leaves ATen's alone."""
    own = fingerprint()
    assert fingerprint() == own and own["torch CPU capability"] == kernels_capability()
    assert fingerprint("--bitwise")["torch CPU capability"] == "AVX2"
    other = fingerprint(MKL_CBWR="COMPATIBLE,STRICT")
    assert other["matmul (MKL)"] != own["matmul (MKL)"]
    assert other["layer norm (ATen)"] == own["layer norm (ATen)"]
