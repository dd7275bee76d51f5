"""The ceiling: what the best policy within a KL budget could reach, estimated from samples of the reference.

Two curves, both from N pure samples of the reference per held-out prompt, each scored once:

- **The KL-regularised optimum** π*_β(y|x) ∝ π_ref(y|x)·exp(r(x,y)/β), the policy that maximises
  E[r] − β·KL(π‖π_ref) (the objective DPO and RLHF optimise; Rafailov et al. 2023, eq. 4). Within one prompt,
  self-normalised importance weights w_i = exp(r_i/β) / Σ_j exp(r_j/β) turn the reference's samples into
  samples of π*: E*[r] ≈ Σ_i w_i·r_i and KL(π*‖π_ref) = E*[r]/β − log E_ref[exp(r/β)]
  ≈ Σ_i w_i·r_i/β − log mean_i exp(r_i/β). That estimate equals KL(w ‖ uniform), so it can never exceed log N:
  as β shrinks the weights pile onto the best sample and the estimate saturates. Only points with KL at most
  `TRUSTED_SHARE_OF_LOG_N`·log N are called trusted.
- **Best-of-n** of the reference: sample n, keep the highest reward. Its expected value is computed exactly
  over all n-subsets of the N samples (the order-statistic, U-statistic estimator: the k-th smallest of N is
  the maximum of C(k−1, n−1) of the C(N, n) subsets), and its KL to the reference is at most
  log n − (n−1)/n (Stiennon et al. 2020; an upper bound, Beirami et al. 2024).

Every function here is pure: lists of per-prompt rewards in, numbers out.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import mean

# Beyond half of log N nats the importance-weighted estimate is dominated by a handful of samples per prompt.
TRUSTED_SHARE_OF_LOG_N = 0.5
# β of the KL-regularised optimum, from nearly the reference (large β) to nearly best-of-N (small β).
DEFAULT_BETAS = tuple(round(10 ** (0.7 - 0.1 * k), 4) for k in range(21))  # 5.01 ... 0.0501
BOOTSTRAP_RESAMPLES = 1000


@dataclass
class CeilingPoint:
    """One point of a ceiling curve: means over prompts, with a 95% bootstrap interval over prompts."""

    label: str  # "β=0.35" or "n=16"
    kl: float
    reward: float
    reward_interval: tuple[float, float]
    p_positive: float | None  # None where the reward is a function (no probability)
    judge_p_positive: float | None  # None without a classifier judge
    trusted: bool


def trusted_kl(samples_per_prompt: int) -> float:
    """The largest KL of the optimum an estimate from this many reference samples per prompt is trusted at."""
    return TRUSTED_SHARE_OF_LOG_N * math.log(samples_per_prompt)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def optimum_weights(rewards: Sequence[float], beta: float) -> list[float]:
    """Self-normalised importance weights of the KL-regularised optimum within one prompt: softmax(r / β)."""
    scaled = [r / beta for r in rewards]
    norm = _logsumexp(scaled)
    return [math.exp(s - norm) for s in scaled]


def _optimum(rewards: Sequence[float], beta: float) -> tuple[list[float], float, float]:
    """(weights, E*[r], KL(π*‖π_ref)) for one prompt from N reference samples' rewards."""
    weights = optimum_weights(rewards, beta)
    expected = sum(w * r for w, r in zip(weights, rewards))
    kl = expected / beta - (_logsumexp([r / beta for r in rewards]) - math.log(len(rewards)))
    return weights, expected, max(kl, 0.0)  # ≥ 0 exactly; rounding can give -1e-16


def optimum_prompt(rewards: Sequence[float], beta: float) -> tuple[float, float]:
    """(E*[r], KL(π*‖π_ref)) for one prompt from N reference samples' rewards."""
    _, expected, kl = _optimum(rewards, beta)
    return expected, kl


@functools.lru_cache(maxsize=4096)
def best_of_n_weights(n: int, size: int) -> tuple[float, ...]:
    """P(the k-th smallest of `size` samples is the maximum of a uniformly random n-subset), k = 1..size.

    Exact integers divided once; cached because every prompt of a ceiling uses the same weights."""
    if not 1 <= n <= size:
        raise ValueError(f"best-of-n needs 1 <= n <= {size}, got {n}")
    total = math.comb(size, n)
    return tuple(math.comb(k - 1, n - 1) / total for k in range(1, size + 1))


@functools.lru_cache(maxsize=16)
def _best_of_n_matrix(size: int) -> np.ndarray:
    """Row n − 1: `best_of_n_weights(n, size)`; (size, size)."""
    return np.array([best_of_n_weights(n, size) for n in range(1, size + 1)])


def _by_reward(rewards: Sequence[float], values: Sequence[float]) -> list[float]:
    """`values` from the lowest reward to the highest; ties broken by sample position (the later sample ranks
    higher), as `max` over (reward, index) would."""
    return [values[i] for i in sorted(range(len(rewards)), key=lambda i: (rewards[i], i))]


def _best_of_n_every_n(rewards: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """Row n − 1: the expected `values` of the highest-reward sample of a random n-subset, exactly over all
    n-subsets, for n = 1..N at once (one sort and one matrix product). Ties in reward are broken by sample position
    (the later sample wins), as `max` over (reward, index) would."""
    return _best_of_n_matrix(len(rewards)) @ np.array(_by_reward(rewards, values))


def best_of_n_kl_bound(n: int) -> float:
    """log n − (n−1)/n: an upper bound on KL(best-of-n ‖ reference) (Beirami et al. 2024)."""
    return math.log(n) - (n - 1) / n


@functools.lru_cache(maxsize=16)
def bootstrap_draws(count: int, seed: int) -> np.ndarray:
    """(BOOTSTRAP_RESAMPLES, count) prompt indices drawn with replacement; the same draws for every curve point."""
    rng = random.Random(seed)
    return np.array([[rng.randrange(count) for _ in range(count)] for _ in range(BOOTSTRAP_RESAMPLES)])


def _bootstrap(per_prompt: Sequence[float], seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean over prompts, resampling prompts with replacement."""
    means = np.sort(np.asarray(per_prompt)[bootstrap_draws(len(per_prompt), seed)].mean(axis=1))
    return float(means[int(0.025 * BOOTSTRAP_RESAMPLES)]), float(means[int(0.975 * BOOTSTRAP_RESAMPLES) - 1])


def _check(rewards: Sequence[Sequence[float]]) -> int:
    sizes = {len(r) for r in rewards}
    if not rewards or len(sizes) != 1 or min(sizes) < 2:
        raise ValueError("need the same number (>= 2) of samples for every prompt")
    return sizes.pop()


def optimum_curve(rewards: Sequence[Sequence[float]], p_positive: Sequence[Sequence[float]] | None,
                  judge: Sequence[Sequence[float]] | None = None, betas: Sequence[float] = DEFAULT_BETAS,
                  seed: int = 0) -> list[CeilingPoint]:
    """The reference (β = ∞), then the KL-regularised optimum for each β (largest first: KL grows along the list).

    `rewards[p][i]` is the reward of prompt p's i-th reference sample; `p_positive` (None for a reward function)
    and `judge` (the held-out judge's positive probability) are averaged with the same weights.
    """
    size = _check(rewards)
    # β = ∞ is the reference itself: uniform weights, KL 0
    reference = [mean(r) for r in rewards]
    points = [CeilingPoint("β=∞", 0.0, mean(reference), _bootstrap(reference, seed),
                           mean([mean(p) for p in p_positive]) if p_positive is not None else None,
                           mean([mean(j) for j in judge]) if judge is not None else None, True)]
    limit = _beta_at_trusted_limit(rewards, betas, trusted_kl(size))
    for beta in sorted({*betas, *([limit] if limit is not None else [])}, reverse=True):
        weights, reward_per_prompt, kls = zip(*(_optimum(r, beta) for r in rewards))
        kl = mean(kls)

        def weighted(values: Sequence[Sequence[float]]) -> float:
            return mean([sum(w * v for w, v in zip(ws, vs)) for ws, vs in zip(weights, values)])

        points.append(CeilingPoint(f"β={beta:.3g}", kl, mean(reward_per_prompt), _bootstrap(reward_per_prompt, seed),
                                   weighted(p_positive) if p_positive is not None else None,
                                   weighted(judge) if judge is not None else None,
                                   kl <= trusted_kl(size)))
    return points


def _beta_at_trusted_limit(rewards: Sequence[Sequence[float]], betas: Sequence[float], limit: float,
                           steps: int = 60) -> float | None:
    """The β at which the optimum's mean KL reaches `limit` (from at or below it), when `betas` has points on both
    sides of it; else None. With it on the curve, the trusted part ends at the trusted KL itself rather than at
    the last β of the grid before it (with the default grid and 512 samples, 3.12 nats instead of 2.95).
    Bisection in log β: the KL grows as β shrinks."""
    scaled = np.asarray(rewards, dtype=float)

    def mean_kl(beta: float) -> float:
        logits = scaled / beta
        log_weights = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        return float(np.mean(np.sum(np.exp(log_weights) * (log_weights + math.log(scaled.shape[1])), axis=1)))

    limit *= 1 - 1e-9  # a hair inside, so that the curve's own (unvectorised) KL of the point is within it too
    kls = {beta: mean_kl(beta) for beta in betas}
    inside = [beta for beta, kl in kls.items() if kl <= limit]
    outside = [beta for beta, kl in kls.items() if kl > limit]
    if not inside or not outside:
        return None
    low, high = math.log(max(outside)), math.log(min(inside))  # log β: KL above the limit at low, within at high
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if mean_kl(math.exp(middle)) > limit else (low, middle)
    return math.exp(high)


def best_of_n_curve(rewards: Sequence[Sequence[float]], p_positive: Sequence[Sequence[float]] | None,
                    judge: Sequence[Sequence[float]] | None = None, seed: int = 0) -> list[CeilingPoint]:
    """Best-of-n for n = 1..N (N samples per prompt), at the KL upper bound log n − (n−1)/n."""
    size = _check(rewards)

    def per_prompt(values: Sequence[Sequence[float]]) -> np.ndarray:  # (prompts, n)
        return np.stack([_best_of_n_every_n(r, v) for r, v in zip(rewards, values)])

    reward = per_prompt(rewards)
    p_positive_ = per_prompt(p_positive) if p_positive is not None else None
    judge_ = per_prompt(judge) if judge is not None else None
    points = []
    for n in range(1, size + 1):
        reward_per_prompt = reward[:, n - 1].tolist()
        points.append(CeilingPoint(f"n={n}", best_of_n_kl_bound(n), mean(reward_per_prompt),
                                   _bootstrap(reward_per_prompt, seed),
                                   mean(p_positive_[:, n - 1].tolist()) if p_positive_ is not None else None,
                                   mean(judge_[:, n - 1].tolist()) if judge_ is not None else None, True))
    return points


def _along_trusted(curve: Sequence[CeilingPoint], given: str, value: float, wanted: str) -> float | None:
    """The optimum curve's `wanted` ("kl" or "reward") where its `given` one equals `value`, linear between its
    trusted points (both grow along the curve); None outside them."""
    trusted = sorted((p for p in curve if p.trusted), key=lambda p: p.kl)
    for low, high in zip(trusted, trusted[1:]):
        start, end = getattr(low, given), getattr(high, given)
        if start <= value <= end:
            share = (value - start) / (end - start) if end > start else 0.0
            return getattr(low, wanted) + share * (getattr(high, wanted) - getattr(low, wanted))
    return None


def ceiling_kl_at(curve: Sequence[CeilingPoint], reward: float) -> float | None:
    """The KL at which the optimum curve (starting at the reference, KL 0) reaches `reward`, linear between its
    points; None when the reward lies beyond its trusted points or below its start."""
    return _along_trusted(curve, "reward", reward, "kl")


# The two definitions a reader sees, the one text of each (report tables, SUMMARY.md; docs/metrics.md explains them).
KL_OVERHEAD_DEFINITION = ("a policy's KL divided by the KL at which the optimum reaches the same mean reward: 1× is "
                          "as good as it gets")
GAIN_SHARE_DEFINITION = ("a policy's reward gain over the reference divided by the optimum's gain at the policy's own "
                         "KL: 100% is as good as it gets")


def kl_overhead(curve: Sequence[CeilingPoint], kl: float, reward: float) -> float | None:
    """KL_OVERHEAD_DEFINITION, as a number (1 is optimal).

    NaN when the reward is not above the reference's (the ceiling's first point: nothing gained to price);
    None when it lies beyond the ceiling's trusted range.
    """
    if reward <= curve[0].reward:
        return math.nan
    needed = ceiling_kl_at(curve, reward)
    return None if needed is None else kl / needed


def optimum_reward_at(curve: Sequence[CeilingPoint], kl: float) -> float | None:
    """The optimum curve's mean reward at `kl` nats, linear between its trusted points; None beyond them."""
    return _along_trusted(curve, "kl", kl, "reward")


def gain_share(curve: Sequence[CeilingPoint], kl: float, reward: float) -> float | None:
    """GAIN_SHARE_DEFINITION, as a number: 1 is the most any policy gets for that KL (for Gaussian rewards about
    1/√overhead).

    The overhead prices a reward in KL; this share prices a KL in reward, so it needs the ceiling trusted out to
    the method's KL, not only to the KL where the optimum reaches its reward: None beyond the trusted points
    (more ceiling samples per prompt widen them: ½·log N nats). NaN when the method has not moved (KL ≤ 0).
    """
    if kl <= 0:
        return math.nan
    best = optimum_reward_at(curve, kl)
    if best is None:
        return None
    return (reward - curve[0].reward) / (best - curve[0].reward) if best > curve[0].reward else math.nan


def gain_share_text(share: float | None) -> str:
    if share is None:
        return "outside the trusted range"
    if math.isnan(share):
        return "–"
    return f"{share:.0%}"


def overhead_text(overhead: float | None) -> str:
    if overhead is None:
        return "outside the trusted range"
    if math.isnan(overhead):
        return "no reward gain"
    return f"{overhead:.1f}×"
