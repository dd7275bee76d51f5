#!/usr/bin/env python3
"""Whether this machine computes the pipeline's floating-point kernels to the same bytes as another, in seconds
rather than a whole pipeline run: a short hash of each kernel family's output on fixed inputs, on the CPU's own
kernels or, with --bitwise, on the kernels a `--bitwise` run pins (sentiment_dpo/kernels.py). Run it on two machines
and compare the lines; one that differs names the kernel family, and so the library (MKL, oneDNN or ATen), that
computes differently there.

    python3 scripts/kernel_fingerprint.py --bitwise  # one line per kernel family: NAME HASH
    python3 scripts/kernel_fingerprint.py --json     # the CPU's own kernels, as one JSON object
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable


def _digest(tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().reshape(-1).numpy().tobytes()).hexdigest()[:12]


def families() -> dict[str, Callable]:
    """Each kernel family the pipeline runs (which library computes it in a CPU build of torch), as a function of a
    seeded generator returning the tensor whose bytes are hashed."""
    import torch
    import torch.nn.functional as F

    def randn(g, *shape):
        return torch.randn(*shape, generator=g)

    def adamw(g):  # the trainer's optimizer (transformers' default: fused AdamW), three steps on a quadratic
        weights = torch.nn.Parameter(randn(g, 4096))
        optimizer = torch.optim.AdamW([weights], lr=1e-2, fused=True)
        for _ in range(3):
            (weights.pow(2).sum() / 2).backward()
            optimizer.step()
            optimizer.zero_grad()
        return weights

    return {
        "matmul (MKL)": lambda g: randn(g, 64, 384) @ randn(g, 384, 256),
        "small matmul (MKL)": lambda g: randn(g, 8, 16) @ randn(g, 16, 4),
        "batched matmul (MKL)": lambda g: torch.bmm(randn(g, 8, 48, 64), randn(g, 8, 64, 48)),
        "linear (MKL)": lambda g: F.linear(randn(g, 16, 48, 256), randn(g, 1024, 256), randn(g, 1024)),
        "gelu, erf (oneDNN)": lambda g: F.gelu(randn(g, 16, 48, 384)),
        "gelu, tanh (ATen)": lambda g: F.gelu(randn(g, 16, 48, 256), approximate="tanh"),
        "layer norm (ATen)": lambda g: F.layer_norm(randn(g, 16, 48, 256), (256,)),
        "softmax (ATen)": lambda g: torch.softmax(randn(g, 16, 4096), -1),
        "log-softmax (ATen)": lambda g: torch.log_softmax(randn(g, 16, 4096), -1),
        "exp (MKL VML)": lambda g: torch.exp(randn(g, 16, 4096)),
        "log (MKL VML)": lambda g: torch.log(torch.rand(16, 4096, generator=g) + 1e-3),
        "sqrt (MKL VML)": lambda g: torch.sqrt(torch.rand(16, 4096, generator=g)),
        "logsumexp (ATen, exp and log)": lambda g: torch.logsumexp(randn(g, 16, 4096), -1),
        "sum (ATen)": lambda g: randn(g, 16, 4096).sum(-1),
        "fused AdamW (ATen)": adamw,
        "sampling (ATen)": lambda g: torch.multinomial(torch.softmax(randn(g, 16, 4096), -1), 8, generator=g),
    }


def fingerprint() -> dict[str, str]:
    """Kernel family -> hash of its output, plus the code path torch chose."""
    import torch

    out = {"torch CPU capability": torch.backends.cpu.get_cpu_capability()}
    for name, compute in families().items():
        generator = torch.Generator().manual_seed(0)
        out[name] = _digest(compute(generator))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of lines.")
    parser.add_argument("--bitwise", action="store_true", help="On the kernels of a --bitwise run.")
    args = parser.parse_args(argv)
    if args.bitwise:
        from sentiment_dpo.kernels import use_bitwise_kernels

        use_bitwise_kernels()  # before torch computes anything, as a --bitwise script does
    result = fingerprint()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(map(len, result))
        for name, value in result.items():
            print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
