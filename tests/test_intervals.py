"""The policy's 95% bootstrap intervals over held-out prompts: their definition against a brute-force resampling,
their coverage on data with a known mean, and the KL overhead's interval against the ceiling on the same prompts."""

import random

import numpy as np
import pytest

from sentiment_dpo.evaluation.ceiling import BOOTSTRAP_RESAMPLES, bootstrap_draws, kl_overhead, optimum_curve
from sentiment_dpo.evaluation.intervals import policy_intervals


def _log_ratio(token_kl: float) -> float:
    """A sample's log-ratio in these rows: another value than its token KL, so each interval reads its own."""
    return 1.5 * token_kl + 0.1


def _rows(values_by_prompt: list[list[tuple[float, float, float]]]) -> list[dict]:
    """Sample rows from (reward, p_positive, token KL) per sample of each prompt."""
    return [{"prompt_index": p, "reward": r, "p_positive": q, "token_kl": k, "log_ratio": _log_ratio(k)}
            for p, samples in enumerate(values_by_prompt) for r, q, k in samples]


def test_each_interval_is_the_percentile_interval_of_prompt_resamples_by_brute_force():
    rng = random.Random(0)
    # two samples per prompt: a prompt's mean, not each sample, is what a resample draws
    data = [[(rng.gauss(0, 1), rng.random(), abs(rng.gauss(2, 1))) for _ in range(2)] for _ in range(30)]
    intervals = policy_intervals(_rows(data), None, seed=3)
    draws = bootstrap_draws(30, 3)
    for field, value in (("reward_mean_ci95", lambda s: s[0]), ("p_positive_mean_ci95", lambda s: s[1]),
                         ("kl_ci95", lambda s: s[2]), ("kl_monte_carlo_ci95", lambda s: _log_ratio(s[2]))):
        per_prompt = [sum(value(s) for s in samples) / 2 for samples in data]
        means = sorted(sum(per_prompt[i] for i in draw) / 30 for draw in draws)
        # numpy's default percentile: linear between the order statistics at (n - 1)·q
        low, high = (means[int(q)] + (q % 1) * (means[int(q) + 1] - means[int(q)])
                     for q in ((BOOTSTRAP_RESAMPLES - 1) * 0.025, (BOOTSTRAP_RESAMPLES - 1) * 0.975))
        assert intervals[field] == pytest.approx((low, high), abs=1e-12), field
    assert "kl_overhead_ci95" not in intervals  # no ceiling, no overhead


def test_the_mean_intervals_cover_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        rewards = rng.normal(0.5, 1.0, size=60)
        low, high = policy_intervals(_rows([[(r, 0.5, 0.0)] for r in rewards]), None, seed=0)["reward_mean_ci95"]
        covered += low <= 0.5 <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_the_overhead_interval_resamples_the_ceiling_with_the_policy():
    rng = random.Random(2)
    prompts = 40
    ceiling = [[rng.gauss(0.3 * (p % 4), 1.0) for _ in range(64)] for p in range(prompts)]
    # a policy a little better than the reference on every prompt, at 0.5 nats
    policy = [[(sum(c) / 64 + 0.4 + rng.gauss(0, 0.3), 0.5, 0.5 + rng.gauss(0, 0.1))] for c in ceiling]
    intervals = policy_intervals(_rows(policy), ceiling, seed=0)
    low, high = intervals["kl_overhead_ci95"]
    curve = optimum_curve(ceiling, [[0.5] * 64 for _ in ceiling])
    reward = sum(s[0][0] for s in policy) / prompts
    kl = sum(s[0][2] for s in policy) / prompts
    point = kl_overhead(curve, kl, reward)
    assert point is not None and low < point < high and high - low > 0.05 * point
    # with every prompt alike (ceiling and policy), no resample differs: the interval is the point itself
    same_ceiling = [ceiling[0]] * prompts
    same_policy = [[(sum(ceiling[0]) / 64 + 0.4, 0.5, 0.5)]] * prompts
    low, high = policy_intervals(_rows(same_policy), same_ceiling, seed=0)["kl_overhead_ci95"]
    exact = kl_overhead(optimum_curve(same_ceiling, [[0.5] * 64] * prompts), 0.5, sum(ceiling[0]) / 64 + 0.4)
    assert low == pytest.approx(high) and low == pytest.approx(exact, rel=0.02)


def test_an_overhead_undefined_on_many_resamples_has_no_interval():
    ceiling = [[0.0, 1.0] * 4 for _ in range(10)]
    policy = [[(0.5 + (0.3 if p % 2 else -0.3), 0.5, 0.2)] for p in range(10)]  # gains on half the resamples
    assert policy_intervals(_rows(policy), ceiling, seed=0)["kl_overhead_ci95"] is None
