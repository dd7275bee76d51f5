"""The network's reward regression: the within-prompt statistics against hand-computed values, the regressor
against padding, and a fit that must learn a reward the network can express."""

import itertools
import random

import pytest
import torch

from reward_regression import (RewardRegressor, centred_squared_error, fit_reward_regressor,
                                             predict_rewards)
from within_prompt import centre, correlation

PAD = 0


def test_centre_and_correlation_by_hand():
    values = torch.tensor([1.0, 3.0, 10.0, 11.0, 15.0], dtype=torch.float64)
    prompts = torch.tensor([0, 0, 1, 1, 1])
    assert centre(values, prompts).tolist() == pytest.approx([-1.0, 1.0, -2.0, -1.0, 3.0])
    # centred, against [-1, 1] and [0, -1, 1]: (1 + 1 + 0 + 1 + 3) / (sqrt(1+1+4+1+9) · sqrt(1+1+0+1+1)) = 6/8
    actual = torch.tensor([5.0, 7.0, 2.0, 1.0, 3.0], dtype=torch.float64)
    assert correlation(values, actual, prompts) == pytest.approx(6 / 8)
    # a prompt-level offset, which no policy can act on, changes nothing
    assert correlation(values + torch.tensor([100.0, 100, -7, -7, -7]), actual, prompts) == pytest.approx(6 / 8)


def test_centred_squared_error_is_the_pairwise_error_over_n():
    rng = random.Random(0)
    sizes = [2, 3, 5]
    predicted = torch.tensor([rng.gauss(0, 1) for _ in range(sum(sizes))], dtype=torch.float64)
    rewards = torch.tensor([rng.gauss(0, 1) for _ in range(sum(sizes))], dtype=torch.float64)
    prompts = torch.tensor([k for k, n in enumerate(sizes) for _ in range(n)])
    brute, start = 0.0, 0
    for n in sizes:  # Σ over each prompt's pairs of the squared error of the predicted difference, / n
        p, r = predicted[start : start + n], rewards[start : start + n]
        brute += sum(float((p[i] - p[j]) - (r[i] - r[j])) ** 2 for i, j in itertools.combinations(range(n), 2)) / n
        start += n
    assert float(centred_squared_error(predicted, rewards, prompts)) == pytest.approx(brute / sum(sizes))


def _tiny_lm(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=16, n_positions=32, n_embd=32, n_layer=2, n_head=2))


def test_a_text_is_read_at_its_last_token_whatever_the_padding():
    regressor = RewardRegressor(_tiny_lm(), PAD).eval()
    torch.nn.init.normal_(regressor.head.weight)
    short, long = [3, 5, 7], [3, 5, 7, 9, 11, 2, 4]
    with torch.no_grad():
        alone = regressor([short])
        padded = regressor([short, long])
    assert padded[0].item() == pytest.approx(alone.item(), abs=1e-5)
    assert padded[1].item() != pytest.approx(alone.item(), abs=1e-3)  # the head sees what follows


def _groups(prompts: int, seed: int) -> list[list[tuple[list[int], float]]]:
    """Texts of 3–9 tokens after a prompt token; reward = #3 − #4 (a count the network must carry to the last
    token) + a prompt offset that the centring removes."""
    rng = random.Random(seed)
    groups = []
    for _ in range(prompts):
        offset = rng.gauss(0, 5)
        group = []
        for _ in range(4):
            ids = [rng.randrange(1, 16)] + [rng.randrange(1, 8) for _ in range(rng.randrange(3, 10))]
            group.append((ids, offset + ids[1:].count(3) - ids[1:].count(4)))
        groups.append(group)
    return groups


def test_the_fit_learns_a_reward_the_network_can_express():
    train, held_out = _groups(64, seed=1), _groups(32, seed=2)
    rewards = torch.tensor([r for g in held_out for _, r in g], dtype=torch.float64)
    prompts = torch.tensor([k for k, g in enumerate(held_out) for _ in g])
    lm = _tiny_lm()
    before = [p.detach().clone() for p in lm.parameters()]
    regressor = fit_reward_regressor(lm, PAD, train, epochs=10, learning_rate=3e-3, prompts_per_step=8, seed=0)
    assert any(not torch.equal(b, p) for b, p in zip(before, lm.parameters()))  # every weight trained, in place
    rho = correlation(predict_rewards(regressor, held_out, batch_size=7), rewards, prompts)
    assert rho > 0.9
    shuffled = rewards[torch.randperm(len(rewards), generator=torch.Generator().manual_seed(0))]
    assert abs(correlation(predict_rewards(regressor, held_out, batch_size=7), shuffled, prompts)) < 0.3


def test_a_fit_without_two_texts_of_a_prompt_is_refused():
    with pytest.raises(ValueError, match="at least two texts"):
        fit_reward_regressor(_tiny_lm(), PAD, [[([1, 2], 0.5)]], epochs=1, learning_rate=1e-3, prompts_per_step=1,
                             seed=0)
