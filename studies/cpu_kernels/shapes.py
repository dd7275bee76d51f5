#!/usr/bin/env python3
"""Which matrix-product shapes MKL computes to the same bytes on an Intel and an AMD CPU: a hash of each product
over a grid of shapes (contraction lengths, short sides, batched, the pipeline's own layers), to compare a native
run with one under an emulated CPU. With SENTIMENT_DPO_NEUTRAL_PRODUCTS=0 the products are MKL's own; with the
default (1) they are sentiment_dpo/neutral_products.py's.

    python3 studies/cpu_kernels/shapes.py > results/shapes_SETTING_CPU.json
    python3 studies/cpu_kernels/shapes.py --compare A.json B.json     # the products whose bytes differ
"""

from __future__ import annotations

import hashlib
import json
import sys


def digest(tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().reshape(-1).numpy().tobytes()).hexdigest()[:10]


def products() -> dict[str, str]:
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    out = {}
    # the contraction length K, for a 32 x K @ K x 32 product
    for k in [*range(1, 33), 48, 64, 96, 128, 160, *range(184, 304, 2), 193, 195, 199, 384, 512, 768, 1024,
              *range(1079, 4200, 291), 4096, 8192, 12345, 23457]:
        out[f"K {k}"] = digest(r(32, k) @ r(k, 32))
    # a short side: M rows or N columns, the other side 16, 64 or 1000
    for k in (64, 384):
        for other in (16, 64, 1000):
            for side in range(1, 17):
                out[f"M {side}, K {k}, N {other}"] = digest(r(side, k) @ r(k, other))
                out[f"N {side}, K {k}, M {other}"] = digest(r(other, k) @ r(k, side))
    for k in (64, 256):
        for m, n in ((1, 1), (3, 64), (8, 8), (16, 16), (64, 64)):
            out[f"bmm 8 x {m} x {k} x {n}"] = digest(torch.bmm(r(8, m, k), r(8, k, n)))
    # the pipeline's layers (GPT-2 256 wide with a 4096 vocabulary; MiniLM 384 wide, a 2-class head), forward and
    # both gradients, and attention
    for m in (1, 3, 64, 200):
        for k, n in ((256, 768), (256, 256), (1024, 256), (256, 4096), (384, 1536), (1536, 384), (384, 2)):
            x, w, bias, grad = r(m, k), r(n, k), r(n), r(m, n)
            out[f"linear {m} x {k} -> {n}"] = digest(F.linear(x, w, bias))
            out[f"weight gradient {m} x {k} -> {n}"] = digest(grad.t() @ x)
            out[f"input gradient {m} x {k} -> {n}"] = digest(grad @ w)
    for batch, queries, keys in ((8, 24, 24), (64, 1, 17), (4, 3, 3)):
        q, k, v = r(batch, 4, queries, 64), r(batch, 4, keys, 64), r(batch, 4, keys, 64)
        out[f"attention {batch} x {queries} x {keys}"] = digest(F.scaled_dot_product_attention(q, k, v))
    return out


def compare(first: str, second: str) -> None:
    with open(first) as f, open(second) as g:
        a, b = json.load(f), json.load(g)
    names = [name for name in a if name != "kernels"]
    differ = [name for name in names if a[name] != b[name]]
    print(f"{len(names) - len(differ)} of {len(names)} products the same; {len(differ)} differ"
          + "".join(f"\n  {name}" for name in differ))


def main() -> int:
    if sys.argv[1:2] == ["--compare"]:
        compare(*sys.argv[2:4])
        return 0
    from sentiment_dpo.kernels import in_effect, pin_cpu_kernels

    pin_cpu_kernels()
    print(json.dumps({"kernels": in_effect()} | products(), indent=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
