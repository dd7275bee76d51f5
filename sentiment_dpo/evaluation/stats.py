"""Confidence intervals over independent runs (training seeds)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal 1.96.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
          2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError("need at least one degree of freedom")
    return _T_975[df - 1] if df <= len(_T_975) else 1.96


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval, t-based (sample std / sqrt(n)); NaN half-width for n=1."""
    n = len(values)
    if not n:
        raise ValueError("no values")
    m = sum(values) / n
    if n == 1:
        return m, math.nan
    sample_std = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, t_quantile_975(n - 1) * sample_std / math.sqrt(n)
