"""95% bootstrap intervals over the held-out prompts for a trained policy's point: its mean reward, p_positive and KL,
and its KL overhead against the ceiling.

Stage 4 measures the policy and the ceiling on the same held-out prompts, so each bootstrap resample draws prompts
with replacement once and recomputes both from those prompts: the overhead's interval carries the ceiling's
sampling error as well as the policy's (Efron & Tibshirani 1993, the percentile interval). Pure functions: sample
rows and per-prompt rewards in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .ceiling import (BOOTSTRAP_RESAMPLES, DEFAULT_BETAS, CeilingPoint, bootstrap_draws, kl_overhead, optimum_prompt,
                      trusted_kl)
from .metrics import per_prompt_means

# An interval needs its statistic defined on nearly every resample (the overhead is undefined where a resample's
# reward gain is nil or beyond the ceiling's trusted range).
MIN_DEFINED_SHARE = 0.975


def percentile_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of bootstrap replicates."""
    low, high = np.percentile(np.asarray(values, dtype=float), [2.5, 97.5])
    return float(low), float(high)


def _per_prompt(rows: list[dict[str, Any]], field: str) -> np.ndarray:
    """(prompts,): the mean of `field` over each prompt's sample rows, prompts in index order."""
    return np.array(per_prompt_means([row["prompt_index"] for row in rows], [row[field] for row in rows]))


def _optimum_per_prompt(ceiling_rewards: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(rewards, kls), each (prompts, 1 + betas): the optimum's E*[r] and KL on each prompt at β = ∞ and each of
    `DEFAULT_BETAS` (largest first), as `ceiling.optimum_curve` averages them."""
    betas = sorted(DEFAULT_BETAS, reverse=True)
    points = np.array([[(sum(r) / len(r), 0.0), *(optimum_prompt(r, beta) for beta in betas)]
                       for r in ceiling_rewards])  # (prompts, 1 + betas, 2)
    return points[..., 0], points[..., 1]


def policy_intervals(rows: list[dict[str, Any]], ceiling_rewards: Sequence[Sequence[float]] | None,
                     seed: int) -> dict[str, Any]:
    """95% intervals of the policy's mean reward, mean p_positive (where the reward gives one) and both KL
    estimates (its samples' `reward`, `p_positive`, `token_kl` and `log_ratio` rows: `kl` is the mean token KL,
    `kl_monte_carlo` the mean log-ratio) and, with the ceiling's per-prompt rewards (the same prompts, in the same
    order), of its KL overhead, priced with `kl` (None when undefined on too many resamples)."""
    reward, token_kl, log_ratio = (_per_prompt(rows, f) for f in ("reward", "token_kl", "log_ratio"))
    draws = bootstrap_draws(len(reward), seed)  # (resamples, prompts)
    out: dict[str, Any] = {
        "reward_mean_ci95": percentile_interval(reward[draws].mean(axis=1)),
        # a reward function gives no p_positive
        **({"p_positive_mean_ci95": percentile_interval(_per_prompt(rows, "p_positive")[draws].mean(axis=1))}
           if "p_positive" in rows[0] else {}),
        "kl_ci95": percentile_interval(token_kl[draws].mean(axis=1)),
        "kl_monte_carlo_ci95": percentile_interval(log_ratio[draws].mean(axis=1)),
    }
    if ceiling_rewards is None:
        return out
    if len(ceiling_rewards) != len(reward):
        raise ValueError("the ceiling and the policy must be measured on the same prompts")
    optimum_rewards, optimum_kls = _optimum_per_prompt(ceiling_rewards)
    trusted = trusted_kl(len(ceiling_rewards[0]))
    overheads = []
    for draw in draws:
        curve_rewards, curve_kls = optimum_rewards[draw].mean(axis=0), optimum_kls[draw].mean(axis=0)
        curve = [CeilingPoint("", float(k), float(r), (math.nan, math.nan), math.nan, None, bool(k <= trusted))
                 for k, r in zip(curve_kls, curve_rewards)]
        overhead = kl_overhead(curve, float(token_kl[draw].mean()), float(reward[draw].mean()))
        if overhead is not None and not math.isnan(overhead):
            overheads.append(overhead)
    defined = len(overheads) >= MIN_DEFINED_SHARE * BOOTSTRAP_RESAMPLES
    out["kl_overhead_ci95"] = percentile_interval(overheads) if defined else None
    return out
