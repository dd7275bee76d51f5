"""The bag-of-tokens limit: ridge fit and within-prompt correlation against brute force and known answers."""

import math
import random

import pytest
import torch

from bag_of_tokens import fit_token_scores, token_counts, within_prompt_rho

VOCAB = 12


def _weights(seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0, 1) for _ in range(VOCAB)]


def _groups(weights: list[float], noise: float, prompts: int, seed: int) -> list[list[tuple[list[int], float]]]:
    """Texts of 6 tokens; reward = Σ weights[token] + a prompt offset + Gaussian noise of sd `noise`."""
    rng = random.Random(seed)
    groups = []
    for _ in range(prompts):
        offset = rng.gauss(0, 3)  # prompt-level shifts the within-prompt centring must remove
        group = []
        for _ in range(4):
            ids = [rng.randrange(VOCAB - 1) for _ in range(6)]  # the last token never occurs
            group.append((ids, offset + sum(weights[t] for t in ids) + rng.gauss(0, noise)))
        groups.append(group)
    return groups


def test_ridge_equals_the_dense_centred_solution():
    groups = _groups(_weights(0), 0.5, 30, seed=1)
    rows, targets = [], []
    for group in groups:  # brute force: dense counts, centred within each prompt, over the tokens that occur
        counts = torch.zeros(len(group), VOCAB - 1, dtype=torch.float64)
        for i, (ids, _) in enumerate(group):
            for t in ids:
                counts[i, t] += 1
        rewards = torch.tensor([r for _, r in group], dtype=torch.float64)
        rows.append(counts - counts.mean(0))
        targets.append(rewards - rewards.mean())
    x, y = torch.cat(rows), torch.cat(targets)
    expected = torch.linalg.solve(x.T @ x + 2.0 * torch.eye(VOCAB - 1, dtype=torch.float64), x.T @ y)
    scores = fit_token_scores(groups, VOCAB, l2=2.0)
    assert torch.allclose(scores[:-1], expected)
    assert scores[-1] == 0.0  # a token no sample contains gets no score


def test_an_additive_reward_is_recovered_and_ranks_held_out_texts_perfectly():
    weights = _weights(2)
    scores = fit_token_scores(_groups(weights, 0.0, 40, seed=3), VOCAB, l2=1e-9)
    # within a prompt only differences count: the scores equal the weights up to one shared constant
    shift = scores[0] - weights[0]
    assert torch.allclose(scores[:-1] - shift, torch.tensor(weights[:-1], dtype=torch.float64), atol=1e-6)
    assert within_prompt_rho(token_counts(_groups(weights, 0.0, 40, seed=4), VOCAB), scores) == pytest.approx(1.0)


def test_held_out_rho_is_signal_over_total_spread():
    # exact token scores on held-out texts whose reward has independent noise: ρ = sd(signal) / sd(signal + noise)
    weights = _weights(5)
    held_out = _groups(weights, 1.0, 3000, seed=6)
    signal_var = 6 * torch.tensor(weights[:-1]).var(unbiased=False).item()  # 6 i.i.d. tokens per text
    within = signal_var * 3 / 4  # centring 4 texts per prompt keeps (n−1)/n of each variance, signal and noise alike
    expected = math.sqrt(within / (within + 1.0 * 3 / 4))
    rho = within_prompt_rho(token_counts(held_out, VOCAB), torch.tensor(weights, dtype=torch.float64))
    assert rho == pytest.approx(expected, abs=0.01)
