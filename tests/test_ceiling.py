"""The ceiling's estimators against hand-computed values and brute-force enumeration."""

import itertools
import math
import random

import pytest

from sentiment_dpo.evaluation import ceiling

# Two prompts, four reference samples each. Prompt A at β = 1: exp(r) = 1, 1, 1, 3, so the weights are
# 1/6, 1/6, 1/6, 1/2, E*[r] = ln 3 / 2 and KL = E*[r] − log((1 + 1 + 1 + 3) / 4) = ln 3 / 2 − ln 1.5.
# Prompt B has equal rewards: uniform weights, E*[r] = 1, KL = 0.
REWARDS = [[0.0, 0.0, 0.0, math.log(3.0)], [1.0, 1.0, 1.0, 1.0]]
P_POSITIVE = [[0.1, 0.2, 0.3, 0.9], [0.5, 0.5, 0.5, 0.5]]


def test_optimum_matches_hand_computed_values():
    curve = ceiling.optimum_curve(REWARDS, P_POSITIVE, betas=[1.0])
    reference, point = curve
    assert reference.kl == 0.0 and reference.reward == pytest.approx((math.log(3) / 4 + 1) / 2)
    assert point.reward == pytest.approx((math.log(3) / 2 + 1) / 2)
    assert point.kl == pytest.approx((math.log(3) / 2 - math.log(1.5)) / 2)
    # p_positive under the same weights: A: (0.1 + 0.2 + 0.3) / 6 + 0.9 / 2 = 0.55; B: 0.5
    assert point.p_positive == pytest.approx((0.55 + 0.5) / 2)
    assert point.judge_p_positive is None


def test_optimum_kl_is_the_weights_kl_to_uniform_and_saturates_at_log_n():
    rng = random.Random(0)
    rewards = [rng.gauss(0, 1) for _ in range(8)]
    for beta in (2.0, 0.5, 0.05):
        weights = ceiling.optimum_weights(rewards, beta)
        _, kl = ceiling.optimum_prompt(rewards, beta)
        assert kl == pytest.approx(sum(w * math.log(8 * w) for w in weights if w > 0))
        assert kl <= math.log(8) + 1e-12
    curve = ceiling.optimum_curve([rewards], [[0.5] * 8], betas=[2.0, 0.01])
    # β = 0.01 is near log 8: not trusted. Between it and β = 2 the curve gains the point at the trusted KL itself.
    assert [p.trusted for p in curve] == [True, True, True, False]
    assert [p.kl for p in curve] == sorted(p.kl for p in curve)
    assert [p.reward for p in curve] == sorted(p.reward for p in curve)
    assert curve[2].kl == pytest.approx(ceiling.trusted_kl(8), rel=1e-6)
    expected, kl = ceiling.optimum_prompt(rewards, ceiling._beta_at_trusted_limit([rewards], [2.0, 0.01],
                                                                                  ceiling.trusted_kl(8)))
    assert curve[2].reward == pytest.approx(expected) and kl == pytest.approx(curve[2].kl)


def test_a_policy_up_to_the_trusted_kl_gets_a_share():
    rng = random.Random(3)
    rewards = [[rng.gauss(0, 1) for _ in range(64)] for _ in range(4)]
    curve = ceiling.optimum_curve(rewards, [[0.5] * 64] * 4)
    limit = ceiling.trusted_kl(64)
    last_grid_point = max(p.kl for p in curve if p.kl < limit * (1 - 1e-6))
    kl = (last_grid_point + limit) / 2  # beyond the grid's last trusted β, within ½·log 64
    assert ceiling.gain_share(curve, kl, curve[0].reward + 0.1) is not None
    assert ceiling.gain_share(curve, limit * 1.01, curve[0].reward + 0.1) is None


def test_best_of_n_equals_enumeration_of_all_subsets():
    rng = random.Random(1)
    rewards = [[round(rng.gauss(0, 1), 1) for _ in range(7)] for _ in range(3)]  # rounding makes ties
    rewards[0][2] = rewards[0][5]
    values = [[rng.random() for _ in range(7)] for _ in range(3)]
    curve = ceiling.best_of_n_curve(rewards, values)
    for n in range(1, 8):
        brute_values, brute_rewards = [], []
        for r, v in zip(rewards, values):
            subsets = list(itertools.combinations(range(7), n))
            brute_values.append(sum(v[max(s, key=lambda i: (r[i], i))] for s in subsets) / len(subsets))
            brute_rewards.append(sum(max(r[i] for i in s) for s in subsets) / len(subsets))
            assert ceiling._best_of_n_every_n(r, v)[n - 1] == pytest.approx(brute_values[-1])
        # the curve computes every n at once: the same numbers, averaged over prompts
        assert curve[n - 1].p_positive == pytest.approx(sum(brute_values) / 3)
        assert curve[n - 1].reward == pytest.approx(sum(brute_rewards) / 3)
    assert curve[0].reward == pytest.approx(sum(sum(r) / 7 for r in rewards) / 3)  # n = 1: the reference
    assert curve[-1].reward == pytest.approx(sum(max(r) for r in rewards) / 3)  # n = N: the best sample
    assert curve[3].kl == pytest.approx(math.log(4) - 3 / 4)


def test_bootstrap_interval_contains_the_mean_and_is_degenerate_without_spread():
    point = ceiling.best_of_n_curve([[0.0, 1.0], [2.0, 3.0], [4.0, 9.0]], [[0.5, 0.5]] * 3)[0]
    low, high = point.reward_interval
    assert low < point.reward < high
    flat = ceiling.best_of_n_curve([[1.0, 1.0]] * 4, [[0.5, 0.5]] * 4)[1]
    assert flat.reward_interval == (1.0, 1.0)


def test_kl_overhead_interpolates_on_the_trusted_curve():
    point = ceiling.CeilingPoint
    curve = [point("β=∞", 0.0, 0.0, (0, 0), 0.4, None, True), point("a", 1.0, 1.0, (0, 0), 0.6, None, True),
             point("b", 3.0, 2.0, (0, 0), 0.8, None, True), point("c", 4.0, 3.0, (0, 0), 0.9, None, False)]
    assert ceiling.ceiling_kl_at(curve, 0.5) == pytest.approx(0.5)
    assert ceiling.ceiling_kl_at(curve, 1.5) == pytest.approx(2.0)
    assert ceiling.kl_overhead(curve, 20.0, 1.5) == pytest.approx(10.0)
    assert ceiling.kl_overhead(curve, 20.0, 2.5) is None  # beyond the trusted points
    assert math.isnan(ceiling.kl_overhead(curve, 5.0, -0.1))  # no gain over the reference
    assert ceiling.overhead_text(None) == "outside the trusted range"
    assert ceiling.overhead_text(10.0) == "10.0×"


def test_gain_share_prices_the_methods_kl_on_the_trusted_curve():
    point = ceiling.CeilingPoint
    curve = [point("β=∞", 0.0, 0.5, (0, 0), 0.4, None, True), point("a", 1.0, 1.5, (0, 0), 0.6, None, True),
             point("b", 3.0, 2.5, (0, 0), 0.8, None, True), point("c", 4.0, 3.5, (0, 0), 0.9, None, False)]
    assert ceiling.optimum_reward_at(curve, 2.0) == pytest.approx(2.0)
    # at 2 nats the optimum gains 2.0 − 0.5 = 1.5 over the reference; a policy gaining 0.75 there has half of it
    assert ceiling.gain_share(curve, 2.0, 1.25) == pytest.approx(0.5)
    assert ceiling.gain_share(curve, 0.5, 0.3) == pytest.approx(-0.4)  # below the reference: a negative share
    assert ceiling.gain_share(curve, 3.5, 3.0) is None  # the optimum is not trusted out to 3.5 nats
    assert math.isnan(ceiling.gain_share(curve, 0.0, 0.5))
    assert ceiling.gain_share_text(0.5) == "50%"
    assert ceiling.gain_share_text(None) == "outside the trusted range"


def test_gain_share_is_one_over_root_overhead_for_gaussian_rewards():
    # r ~ N(0, σ²) under the reference: the optimum at β gains σ²/β at KL σ²/(2β²), i.e. gain(K) = σ·√(2K)
    sigma, point = 0.8, ceiling.CeilingPoint
    curve = [point("β=∞", 0.0, 0.0, (0, 0), 0.5, None, True)]
    curve += [point(f"β={b:.3g}", sigma**2 / (2 * b * b), sigma**2 / b, (0, 0), 0.5, None, True)
              for b in [10 ** (1 - k / 200) for k in range(1, 400)]]
    kl_needed = 0.5
    reward = sigma * math.sqrt(2 * kl_needed)
    for overhead in (2.0, 4.0):
        assert ceiling.kl_overhead(curve, overhead * kl_needed, reward) == pytest.approx(overhead, rel=1e-3)
        assert ceiling.gain_share(curve, overhead * kl_needed, reward) == pytest.approx(overhead ** -0.5, rel=1e-3)


def test_unequal_sample_counts_are_refused():
    with pytest.raises(ValueError):
        ceiling.optimum_curve([[0.0, 1.0], [1.0]], [[0.5, 0.5], [0.5]])


def test_each_definition_has_one_text_and_the_ceiling_section_prints_it_once():
    """The KL overhead's and the gain share's definitions live in ceiling.py; the ceiling section (SUMMARY.md, a
    sweep's report) prints each once, and no other module of the package words them again."""
    from conftest import ROOT
    from sentiment_dpo.evaluation.ceiling_samples import markdown_lines

    rewards = [[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, -1.0, 2.0]]
    p_positive = [[0.5] * 4] * 2
    optimum = ceiling.optimum_curve(rewards, p_positive)
    best_of_n = ceiling.best_of_n_curve(rewards, p_positive)
    text = "\n".join(markdown_lines(optimum, best_of_n))
    assert text.count(ceiling.KL_OVERHEAD_DEFINITION) == 1 and text.count(ceiling.GAIN_SHARE_DEFINITION) == 1
    for file in (ROOT / "sentiment_dpo").rglob("*.py"):
        if file.name != "ceiling.py":
            source = file.read_text()
            assert "divided by the KL at which" not in source and "divided by the optimum" not in source, file
