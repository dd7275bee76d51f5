"""Pure parts of the sweep: confidence intervals, self-BLEU, perplexity, aggregation and the budget comparison,
against hand-computed numbers."""

import math

import pytest

from sentiment_dpo.evaluation.metrics import perplexity, self_bleu
from sentiment_dpo.evaluation.stats import mean_ci95, t_quantile_975
from sentiment_dpo.experiments.sweep_report import aggregate, batch_sizes, best_under_budget, finding


def test_mean_ci95_by_hand():
    # values 1, 2, 3: mean 2, sample std 1, half-width t(0.975, 2) * 1 / sqrt(3) = 4.303 / 1.7320508 = 2.48434
    m, half = mean_ci95([1.0, 2.0, 3.0])
    assert m == 2.0 and half == pytest.approx(2.48434, abs=1e-5)
    # two values 0 and 2: std sqrt(2), half-width 12.706 * sqrt(2) / sqrt(2) = 12.706
    assert mean_ci95([0.0, 2.0]) == pytest.approx((1.0, 12.706))
    m, half = mean_ci95([5.0])
    assert m == 5.0 and math.isnan(half)
    assert t_quantile_975(1) == 12.706 and t_quantile_975(100) == 1.96
    with pytest.raises(ValueError):
        mean_ci95([])


def test_self_bleu_by_hand():
    # Two identical texts score 1 against each other; the third shares nothing: precisions 0.1/4, 0.1/3, 0.1/2,
    # 0.1/1 (smoothed zeros) -> geometric mean (0.025 * 0.0333 * 0.05 * 0.1) ** 0.25 = 0.045180.
    assert self_bleu(["a b c d", "a b c d", "e f g h"]) == pytest.approx((2 + 0.0451801) / 3, abs=1e-6)
    # "a b c d e" vs "a b c d": precisions 4/5, 3/4, 2/3, 1/2 -> 0.2 ** 0.25 = 0.668740, no brevity penalty;
    # "a b c d" vs "a b c d e": precisions 1, brevity penalty exp(1 - 5/4) = 0.778801.
    assert self_bleu(["a b c d e", "a b c d"]) == pytest.approx((0.668740 + 0.778801) / 2, abs=1e-6)
    # a text does not count as its own reference: a count clipped by the other text's smaller count
    assert self_bleu(["x x x x", "x y z w"]) == pytest.approx(
        (math.exp((math.log(1 / 4) + 3 * math.log(0.1) - math.log(3 * 2 * 1)) / 4)
         + math.exp((math.log(1 / 4) + math.log(0.1 / 3) + math.log(0.1 / 2) + math.log(0.1)) / 4)) / 2, abs=1e-9)
    with pytest.raises(ValueError):
        self_bleu(["only one"])


def test_perplexity_by_hand():
    # two texts, 2 + 3 tokens, log-probs -2 and -3: exp(5 / 5) = e
    assert perplexity([-2.0, -3.0], [2, 3]) == pytest.approx(math.e)
    with pytest.raises(ValueError):
        perplexity([-1.0], [0])


def _cell(loss, beta, seed, curve):
    points = [{"step": step, "reward_mean": reward, "kl": kl, "p_positive_mean": 0.5, "win_rate": 0.5,
               "distinct_1": 0.3, "distinct_2": 0.8, "token_entropy": 9.0, "self_bleu": 0.1,
               "reference_perplexity": 80.0} for step, reward, kl in curve]
    return {"settings": {"loss": loss, "beta": beta, "seed": seed, "rounds": 1, "learning_rate": 2e-4},
            "curve": points, "final": points[-1]}


def test_aggregate_and_budget():
    cells = [
        _cell("sigmoid", 0.1, 0, [(0, 0.0, 0.0), (10, 1.0, 5.0), (20, 2.0, 12.0)]),
        _cell("sigmoid", 0.1, 1, [(0, 0.0, 0.0), (10, 1.2, 7.0), (20, 2.2, 14.0)]),
        _cell("hinge", 0.1, 0, [(0, 0.0, 0.0), (10, 0.4, 3.0), (20, 0.6, 9.0)]),
        _cell("hinge", 0.1, 1, [(0, 0.0, 0.0), (10, 0.5, 4.0), (20, 0.7, 9.0)]),
    ]
    groups = aggregate(cells)
    sigmoid = groups[("sigmoid", 1, 2e-4, 0.1)]
    assert sigmoid["seeds"] == [0, 1]
    assert sigmoid["final"]["reward_mean"][0] == pytest.approx(2.1)
    # two seeds 2.0 and 2.2: std 0.141421, half-width 12.706 * 0.141421 / sqrt(2) = 1.2706
    assert sigmoid["final"]["reward_mean"][1] == pytest.approx(1.2706)
    assert [p["step"] for p in sigmoid["curve"]] == [0, 10, 20]
    best = best_under_budget(groups, budget=10.0)
    # sigmoid: step 20 has mean KL 13 > 10, so step 10 (reward 1.1, KL 6); hinge: step 20 (reward 0.65, KL 9)
    assert best[("sigmoid", 1, 2e-4)]["step"] == 10 and best[("sigmoid", 1, 2e-4)]["reward"][0] == pytest.approx(1.1)
    assert best[("hinge", 1, 2e-4)]["step"] == 20 and best[("hinge", 1, 2e-4)]["reward"][0] == pytest.approx(0.65)
    text = finding(best, 10.0, several_rates=False)
    assert text.startswith("Within a KL budget of 10 nats, **sigmoid** reaches the highest mean reward: 1.10")
    # intervals: sigmoid 1.1 ± 1.27 and hinge 0.65 ± 0.64 overlap
    assert "within the seed spread" in text
    # within 4 nats only hinge's step 10 (KL 3.5) is left: sigmoid's first checkpoint is at 6, and step 0 (the
    # reference itself, KL 0) does not count as a checkpoint of any loss
    tight = best_under_budget(groups, budget=4.0)
    assert list(tight) == [("hinge", 1, 2e-4)] and tight[("hinge", 1, 2e-4)]["step"] == 10
    text = finding(tight, 4.0, False, beyond=[("sigmoid", 1, 2e-4)])
    assert "**hinge**" in text and "Runner-up" not in text
    assert "Every checkpoint of sigmoid is past this budget." in text
    assert best_under_budget(groups, budget=1.0) == {}
    assert finding({}, 1.0, False, beyond=[("sigmoid", 1, 2e-4), ("hinge", 1, 2e-4)]) == (
        "No trained checkpoint stayed within the KL budget of 1 nats. "
        "Every checkpoint of sigmoid, hinge is past this budget.")


def test_finding_names_what_the_seed_spread_separates():
    def point(reward, half):
        return {"beta": 0.1, "step": 50, "reward": (reward, half), "kl": (15.0, 1.0), "seeds": 3}

    best = {("ipo", 1, 2e-4): point(0.70, 0.10), ("sigmoid", 1, 2e-4): point(0.65, 0.10),
            ("slic", 1, 2e-4): point(0.20, 0.30)}
    text = finding(best, 20.0, several_rates=False)
    # 0.70 - 0.10 = 0.60 < 0.65 + 0.10: overlap; 0.60 > 0.20 + 0.30 = 0.50: separated
    assert "**ipo**" in text and "Runner-up: sigmoid with 0.65 ± 0.10" in text and "within the seed spread" in text
    assert text.count("Below the best by more than the seed spread: slic.") == 1


def test_the_report_names_the_batch_sizes_the_cells_train_with():
    # unset (the default sweep): 448 pairs offline, 16 completions online; set values are reported as they are
    assert (batch_sizes([None], online=False), batch_sizes([None], online=True)) == ("448", "16")
    assert batch_sizes([128, None], online=False) == "128 / 448"
