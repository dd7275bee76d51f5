"""Pure metric functions: reward statistics, diversity (distinct-n, entropy, self-BLEU), KL estimate, perplexity
and win rate.

Diversity is measured on whitespace-separated words, so policies with different tokenizers compare.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def std(values: Sequence[float]) -> float:
    """Population standard deviation."""
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams, pooled over the texts (0 if there are none)."""
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        words = text.split()
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def token_entropy(texts: Sequence[str]) -> float:
    """Shannon entropy (bits) of the word distribution pooled over the texts: higher = more varied vocabulary."""
    counts = Counter(word for text in texts for word in text.split())
    total = sum(counts.values())
    if not total:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def self_bleu(texts: Sequence[str], max_n: int = 4, epsilon: float = 0.1) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen): BLEU-`max_n` of each text against all the others as references,
    averaged; higher = the texts repeat each other more.

    Per text: clipped n-gram precisions for n = 1..max_n (a count is clipped at its largest count in any
    other text), a zero count smoothed to `epsilon` (NLTK's method1), uniform geometric mean, and the
    brevity penalty against the closest other length (the shorter one on ties). Texts with fewer than
    `max_n` words cannot be scored and are left out.
    """
    docs = [text.split() for text in texts]
    if len(docs) < 2:
        raise ValueError("self-BLEU needs at least two texts")
    grams = [[Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1)) for n in range(1, max_n + 1)]
             for words in docs]
    # The two largest counts of each n-gram and who holds the largest: "largest in any *other* text" in O(1).
    top: list[dict[tuple[str, ...], tuple[int, int, int]]] = [{} for _ in range(max_n)]
    for owner, per_n in enumerate(grams):
        for n_index, counter in enumerate(per_n):
            for gram, count in counter.items():
                best, best_owner, second = top[n_index].get(gram, (0, -1, 0))
                if count > best:
                    top[n_index][gram] = (count, owner, best)
                else:
                    top[n_index][gram] = (best, best_owner, max(second, count))
    lengths = [len(words) for words in docs]
    scores = []
    for i, words in enumerate(docs):
        if len(words) < max_n:
            continue
        log_precision = 0.0
        for n_index, counter in enumerate(grams[i]):
            clipped = 0
            for gram, count in counter.items():
                best, best_owner, second = top[n_index][gram]
                clipped += min(count, second if best_owner == i else best)
            log_precision += math.log((clipped or epsilon) / (len(words) - n_index)) / max_n
        closest = min((length for j, length in enumerate(lengths) if j != i), key=lambda L: (abs(L - len(words)), L))
        brevity = 1.0 if len(words) > closest else math.exp(1 - closest / len(words))
        scores.append(brevity * math.exp(log_precision))
    return mean(scores) if scores else 0.0


def perplexity(logps: Sequence[float], token_counts: Sequence[int]) -> float:
    """Per-token perplexity of texts under a model: exp(-(sum of their log-probs) / (their tokens))."""
    total = sum(token_counts)
    if len(logps) != len(token_counts) or not total:
        raise ValueError("need one token count per log-prob and at least one token")
    return math.exp(-sum(logps) / total)


def kl_estimate(policy_logps: Sequence[float], reference_logps: Sequence[float]) -> float:
    """Sequence-level KL(policy || reference) in nats, from samples drawn from the policy.

    `policy_logps[i]` and `reference_logps[i]` are log p(y_i | x_i) of the i-th policy sample under each
    model (summed over its tokens). The mean log-ratio is an unbiased Monte-Carlo estimate of the KL when
    the y_i are pure samples of the policy (no top-k / top-p), the k1 estimator of Schulman (2020).
    """
    if len(policy_logps) != len(reference_logps) or not policy_logps:
        raise ValueError("need the same, non-zero number of policy and reference log-probs")
    return mean([p - r for p, r in zip(policy_logps, reference_logps)])


def kl_standard_error(log_ratios: Sequence[float]) -> float:
    """The standard error of `kl_estimate`: the sample standard deviation of the log-ratios over √n (n ≥ 2)."""
    n = len(log_ratios)
    if n < 2:
        raise ValueError("need at least two log-ratios")
    m = mean(log_ratios)
    return math.sqrt(sum((x - m) ** 2 for x in log_ratios) / (n - 1) / n)


def measurable_drift(kl: float, standard_error: float) -> bool:
    """Whether a KL estimate is distinguishable from no drift at all: |KL| at least one standard error. Below it
    the sign of the estimate is noise (a policy that did not move can read −0.01 nats), so nothing is priced."""
    return abs(kl) >= standard_error


def win_rate(policy_rewards: Sequence[float], reference_rewards: Sequence[float]) -> float:
    """Share of prompts where the policy's reward beats the reference's; ties count 0.5."""
    if len(policy_rewards) != len(reference_rewards) or not policy_rewards:
        raise ValueError("need the same, non-zero number of policy and reference rewards")
    wins = sum(1.0 if p > r else 0.5 if p == r else 0.0 for p, r in zip(policy_rewards, reference_rewards))
    return wins / len(policy_rewards)


def summarize(completions: Sequence[str], rewards: Sequence[float],
              p_positive: Sequence[float] | None) -> dict[str, float]:
    """The per-model block of metrics.json; p_positive and the positive rate only where the reward is a classifier
    (`p_positive` None: a reward function, which gives no probability)."""
    return {
        "reward_mean": mean(rewards),
        "reward_std": std(rewards),
        **({} if p_positive is None else {
            "p_positive_mean": mean(p_positive),
            "positive_rate": mean([1.0 if p > 0.5 else 0.0 for p in p_positive])}),
        "distinct_1": distinct_n(completions, 1),
        "distinct_2": distinct_n(completions, 2),
        "distinct_3": distinct_n(completions, 3),
        "token_entropy": token_entropy(completions),
        "num_samples": len(completions),
    }


# A sample's judge column, and its name in tables: a classifier judge's positive probability, a function's value.
JUDGE_COLUMNS = {"judge_p_positive": "judge p_positive", "judge_score": "judge score"}


def judge_metric(metrics: dict[str, float]) -> str | None:
    """The key of a model's mean judge value in `metrics` (`judge_p_positive_mean` or `judge_score_mean`), or
    None without a judge."""
    return next((f"{column}_mean" for column in JUDGE_COLUMNS if f"{column}_mean" in metrics), None)


def per_prompt_means(prompt_indices: Sequence[int], values: Sequence[float]) -> list[float]:
    """Mean value per prompt index, ordered by prompt index (for win rates with several samples per prompt)."""
    groups: dict[int, list[float]] = {}
    for index, value in zip(prompt_indices, values):
        groups.setdefault(index, []).append(value)
    return [mean(groups[k]) for k in sorted(groups)]
