#!/usr/bin/env python3
"""What one MKL branch (`MKL_CBWR`, read when MKL starts, so one branch per process) computes and how fast: the
throughput and a hash of the product for the matrix shapes of a training step (5,000 tokens through the policy's
256-wide layers and its 4,096-token head) and a small product, and a hash of exp. Two branches that print the same
hashes compute the same bytes on this CPU.

    for b in AVX2,STRICT COMPATIBLE,STRICT AVX,STRICT; do MKL_CBWR=$b python3 studies/cpu_kernels/branches.py; done
"""

from __future__ import annotations

import os
import time

from miniature import digest  # this folder's: the script's own directory is on sys.path

from sentiment_dpo.kernels import pin_cpu_kernels

SHAPES = [(5000, 256, 768), (5000, 256, 1024), (5000, 1024, 256), (2000, 256, 4096), (8, 16, 4)]  # m, k, n
SECONDS = 1.0  # timed per shape


def main() -> None:
    pin_cpu_kernels()  # a branch the caller set wins
    import torch

    generator = torch.Generator().manual_seed(0)
    cells = [os.environ.get("MKL_CBWR", "")]
    for m, k, n in SHAPES:
        a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
        product = a @ b  # the first call also loads MKL's kernels: not timed
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < SECONDS:
            product = a @ b
            reps += 1
        seconds = (time.perf_counter() - start) / reps
        cells.append(f"{m}x{k}x{n} {2 * m * k * n / seconds / 1e9:.0f} GFLOP/s {digest(product)}")
    cells.append(f"exp {digest(torch.exp(torch.randn(16, 4096, generator=generator)))}")
    print(" | ".join(cells))


if __name__ == "__main__":
    main()
