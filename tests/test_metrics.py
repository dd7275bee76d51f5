import math

import pytest

from sentiment_dpo.evaluation.metrics import (distinct_n, kl_estimate, per_prompt_means, std, summarize, token_entropy,
                                              win_rate)


def test_distinct_n_hand_computed():
    texts = ["a b a b", "a c"]
    # unigrams: a b a b a c -> 3 unique / 6
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)
    # bigrams: (a b) (b a) (a b) | (a c) -> 3 unique / 4
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    # trigrams: (a b a) (b a b) -> 2 / 2; "a c" has none
    assert distinct_n(texts, 3) == pytest.approx(1.0)


def test_distinct_n_without_ngrams_is_zero():
    assert distinct_n(["a", ""], 2) == 0.0


def test_token_entropy_hand_computed():
    assert token_entropy(["a a b b"]) == pytest.approx(1.0)  # two equally likely words: 1 bit
    assert token_entropy(["a a a"]) == pytest.approx(0.0)
    # p = (1/2, 1/4, 1/4): 0.5*1 + 2 * 0.25*2 = 1.5 bits
    assert token_entropy(["a b", "a c"]) == pytest.approx(1.5)
    assert token_entropy([""]) == 0.0


def test_kl_estimate_is_mean_log_ratio():
    assert kl_estimate([-1.0, -2.0, -3.0], [-2.0, -2.5, -3.0]) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    with pytest.raises(ValueError):
        kl_estimate([-1.0], [])


def test_win_rate_counts_ties_as_half():
    assert win_rate([1.0, 0.0, 2.0, 5.0], [0.5, 1.0, 2.0, 4.0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    with pytest.raises(ValueError):
        win_rate([], [])


def test_std_and_summary():
    assert std([1.0, 3.0]) == pytest.approx(1.0)
    summary = summarize(["good film", "bad film"], [2.0, -1.0], [0.9, 0.2])
    assert summary["reward_mean"] == pytest.approx(0.5)
    assert summary["reward_std"] == pytest.approx(1.5)
    assert summary["p_positive_mean"] == pytest.approx(0.55)
    assert summary["positive_rate"] == pytest.approx(0.5)
    assert summary["distinct_1"] == pytest.approx(3 / 4)
    assert summary["token_entropy"] == pytest.approx(1.5)
    assert summary["num_samples"] == 2
    assert not math.isnan(summary["distinct_3"])


def test_per_prompt_means_orders_by_prompt():
    assert per_prompt_means([1, 0, 1, 0], [1.0, 2.0, 3.0, 4.0]) == [3.0, 2.0]
