"""Matrix products computed to the same bytes on Intel and AMD CPUs, at about the speed of MKL's own.

With MKL pinned to its AVX2 branch (kernels.py), an Intel and an AMD CPU multiply most matrices with the same code,
but on an AMD CPU MKL runs code of its own, whatever branch it is asked for, for three kinds of shape (measured
product by product natively on AMD EPYC hosts and under an emulated Intel Haswell, whose bytes matched a real Intel
host's in every kernel family: studies/cpu_kernels at commit e3d212a):

- a contraction length from `BAND[0]` to `BAND[1]` (193 to 257; 192 and 258 are computed alike),
- a result with fewer than `MIN_SIDE` rows or columns (MKL's small-matrix code; 16 by 16 is computed alike),
- matrix-vector and dot products (a result of one row or one column).

`use_neutral_products` replaces torch's CPU kernels of the product operators (mm, addmm, bmm, baddbmm, mv, addmv,
dot and their in-place forms), which the forward pass, autograd's backward pass and every composite operator
(linear, matmul, attention) call, by `neutral_product`: a contraction length inside the band is split in two halves
whose products are summed in a fixed order, and a short side is padded with zero rows or columns that are cut off
again. The result is the same product to rounding, computed by code both vendors share, by MKL through the `out=`
forms of the same operators (which keep torch's kernels). MKL's COMPATIBLE branch gives vendor-neutral bytes too,
at half the speed. torch's fused CPU attention is turned off: its products are made inside the kernel, out of
reach, of short query and key blocks; the math backend computes attention with the operators above.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

# Contraction lengths MKL computes otherwise on AMD (inclusive), and the shortest side computed alike.
BAND = (193, 257)
MIN_SIDE = 16

aten = torch.ops.aten


def plain_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b by torch's own kernel (MKL), for a (M, K) or (B, M, K)."""
    out = a.new_empty(0)
    return (aten.bmm.out if a.dim() == 3 else aten.mm.out)(a, b, out=out)


def accumulated_product(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta: float, alpha: float) -> torch.Tensor:
    """beta * c + alpha * (a @ b) by torch's own kernel (MKL)."""
    out = a.new_empty(0)
    return (aten.baddbmm.out if a.dim() == 3 else aten.addmm.out)(c, a, b, beta=beta, alpha=alpha, out=out)


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:  # (..., R, C) -> (..., rows, C), zeros below
    return F.pad(x, (0, 0, 0, rows - x.shape[-2])) if x.shape[-2] < rows else x


def _pad_cols(x: torch.Tensor, cols: int) -> torch.Tensor:  # (..., R, C) -> (..., R, cols), zeros to the right
    return F.pad(x, (0, cols - x.shape[-1])) if x.shape[-1] < cols else x


def neutral_product(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, beta: float = 1.0,
                    alpha: float = 1.0) -> torch.Tensor:
    """beta * c + alpha * (a @ b) for a (..., M, K) and b (..., K, N), with one or no batch dimension, computed by
    products of at least `MIN_SIDE` rows and columns and a contraction length outside `BAND`. c broadcasts to
    (..., M, N). Other types than float32 are computed by torch's kernel as they are."""
    if a.dtype != torch.float32:
        return plain_product(a, b) if c is None else accumulated_product(c, a, b, beta, alpha)
    rows, inner, cols = a.shape[-2], a.shape[-1], b.shape[-1]
    a, b = _pad_rows(a, MIN_SIDE), _pad_cols(b, MIN_SIDE)
    padded = a.shape[-2] != rows or b.shape[-1] != cols
    if c is not None and padded:
        c = _pad_cols(_pad_rows(c.expand(*a.shape[:-2], rows, cols), a.shape[-2]), b.shape[-1])
    halves = [(0, inner)]
    if BAND[0] <= inner <= BAND[1]:
        halves = [(0, inner // 2), (inner // 2, inner)]  # each under BAND[0]
    out = c
    for start, stop in halves:
        part_a, part_b = a[..., start:stop], b[..., start:stop, :]
        if out is None:  # a plain product (alpha is 1)
            out = plain_product(part_a, part_b)
        else:
            out = accumulated_product(out, part_a, part_b, beta if out is c else 1.0, alpha)
    return out[..., :rows, :cols].contiguous() if padded else out


def _mm(a, b):
    return neutral_product(a, b)


def _addmm(c, a, b, *, beta=1, alpha=1):
    return neutral_product(a, b, c, beta, alpha)


def _addmm_(c, a, b, *, beta=1, alpha=1):
    return c.copy_(neutral_product(a, b, c, beta, alpha))


def _mv(a, v):
    return neutral_product(a, v[:, None])[:, 0]


def _addmv(c, a, v, *, beta=1, alpha=1):
    return neutral_product(a, v[:, None], c[:, None], beta, alpha)[:, 0]


def _addmv_(c, a, v, *, beta=1, alpha=1):
    return c.copy_(_addmv(c, a, v, beta=beta, alpha=alpha))


def _dot(x, y):
    return neutral_product(x[None, :], y[:, None])[0, 0]


# operator -> its replacement CPU kernel (the batched ones share the unbatched ones' code)
KERNELS = {"mm": _mm, "bmm": _mm, "addmm": _addmm, "baddbmm": _addmm, "addmm_": _addmm_, "baddbmm_": _addmm_,
           "mv": _mv, "addmv": _addmv, "addmv_": _addmv_, "dot": _dot}
_LIBRARY: torch.library.Library | None = None


def use_neutral_products() -> None:
    """Compute this process's CPU products with `neutral_product` from now on (once per process), and CPU attention
    with them. A machine with a GPU keeps torch's own kernels: its results are not byte-identical across GPU kinds
    anyway, and fused attention is what makes it fast."""
    global _LIBRARY
    if _LIBRARY is not None or torch.cuda.is_available():
        return
    torch.backends.cuda.enable_flash_sdp(False)  # the flag is torch's, for every device
    _LIBRARY = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():  # torch warns that a kernel is replaced: that is the point
        warnings.simplefilter("ignore")
        for name, kernel in KERNELS.items():
            _LIBRARY.impl(name, kernel, "CPU")


def active() -> bool:
    """Whether this process computes its CPU products with `neutral_product`."""
    return _LIBRARY is not None
