"""Vendor-neutral matrix products (sentiment_dpo/neutral_products.py): the same products, computed by MKL only in
the shapes it computes alike on Intel and AMD CPUs. Run in a process of their own on the bitwise kernels
(tests/test_kernels.py starts it; this folder's conftest pins them)."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from sentiment_dpo import kernels, neutral_products
from sentiment_dpo.neutral_products import BAND, MIN_SIDE


@pytest.fixture
def shapes_seen(monkeypatch) -> list[tuple[int, int, int]]:
    """(M, K, N) of every product handed to torch's own kernels (MKL) while a test runs."""
    seen = []

    def recorded(function, first: int):  # first: the position of the left factor
        def call(*args, **kwargs):
            a, b = args[first], args[first + 1]
            if a.dtype == torch.float32:
                seen.append((a.shape[-2], a.shape[-1], b.shape[-1]))
            return function(*args, **kwargs)
        return call

    for name, first in (("plain_product", 0), ("accumulated_product", 1)):
        monkeypatch.setattr(neutral_products, name, recorded(getattr(neutral_products, name), first))
    return seen


def assert_shared_shapes(seen: list[tuple[int, int, int]], what: str = "") -> None:
    assert seen, what
    for rows, inner, cols in seen:
        assert rows >= MIN_SIDE and cols >= MIN_SIDE, (what, rows, inner, cols)
        assert not BAND[0] <= inner <= BAND[1], (what, rows, inner, cols)


def computations(a, b, c, bias):
    m, k = a.shape
    n = b.shape[1]
    return {
        "mm": lambda: a @ b,
        "linear": lambda: F.linear(a, b.t().contiguous(), bias),
        "addmm": lambda: torch.addmm(c, a, b, beta=0.5, alpha=2.0),
        "mv": lambda: torch.mv(a, b[:, 0]),
        "addmv": lambda: torch.addmv(c[:, 0], a, b[:, 0], beta=0.3, alpha=1.5),
        "dot": lambda: torch.dot(a[0], b[:, 0]),
        "bmm": lambda: torch.bmm(a.expand(3, m, k), b.expand(3, k, n)),
        "baddbmm": lambda: torch.baddbmm(c, a.expand(2, m, k), b.expand(2, k, n), beta=0.7),
        "addmm_": lambda: c.clone().addmm_(a, b),
        "baddbmm_": lambda: c.expand(2, m, n).clone().baddbmm_(a.expand(2, m, k), b.expand(2, k, n)),
    }


# inference mode hands composite operators (linear) to the kernels whole: they are decomposed all the same
@pytest.mark.parametrize("context", [contextlib.nullcontext, torch.inference_mode])
@pytest.mark.parametrize("m, k, n", [(1, 256, 768), (3, 200, 5), (64, 256, 4096), (17, 384, 2), (5, 7, 3),
                                     (300, 257, 20), (16, 16, 16), (40, 192, 40), (40, 258, 40)])
def test_each_product_is_the_product_and_reaches_mkl_in_shared_shapes(m, k, n, context, shapes_seen):
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(*s, generator=g, dtype=torch.float64) for s in ((m, k), (k, n), (m, n), (n,))]
    expected = {name: compute() for name, compute in computations(*tensors).items()}  # float64: not rewritten
    for name, compute in computations(*(t.float() for t in tensors)).items():
        shapes_seen.clear()
        with context():
            got = compute()
        assert got.shape == expected[name].shape and got.is_contiguous(), name
        torch.testing.assert_close(got, expected[name].float(), rtol=1e-4, atol=1e-4, msg=name)
        assert_shared_shapes(shapes_seen, name)


def test_the_backward_pass_is_rewritten_too(shapes_seen):
    """A 256 -> 256 layer's input gradient contracts over 256 (in the band), its weight gradient over the 5 rows."""
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(256, 256).double(), torch.randn(5, 256, dtype=torch.float64)
    x.requires_grad_()
    layer(x).pow(2).sum().backward()
    expected = (x.grad.float(), layer.weight.grad.float())
    layer, x = layer.float(), x.detach().float().requires_grad_()
    layer.zero_grad()
    layer(x).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, expected[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.weight.grad, expected[1], rtol=1e-4, atol=1e-4)
    assert len(shapes_seen) >= 5  # forward, input gradient and weight gradient, the two in the band split in two
    assert_shared_shapes(shapes_seen)


@pytest.mark.parametrize("context", [contextlib.nullcontext, torch.inference_mode])
def test_attention_runs_as_rewritten_products(context, shapes_seen):
    """torch's fused CPU attention is off, so attention's products come through the rewrite: a decoding step's single
    query row included."""
    assert not torch.backends.cuda.flash_sdp_enabled()
    g = torch.Generator().manual_seed(0)
    query, keys, values = (torch.randn(2, 4, t, 64, generator=g, dtype=torch.float64) for t in (1, 7, 7))
    expected = F.scaled_dot_product_attention(query, keys, values).float()
    with context():
        got = F.scaled_dot_product_attention(query.float(), keys.float(), values.float())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert_shared_shapes(shapes_seen)


def test_the_process_records_the_bitwise_kernels():
    assert kernels.in_effect() == {"neutral_products": True, "aten": "AVX2", "mkl_cbwr": "AVX2,STRICT",
                                   "onednn_max_cpu_isa": "AVX2"}
