"""How much of the reward's ranking the policy's own network learns from N samples: the limit of training it.

A policy trained on every weight ranks a prompt's texts by its implicit reward log π/π_ref; its KL overhead is
about 1/ρ² and its share of the ceiling's gain about ρ, ρ the within-prompt correlation of that implicit reward
with the reward on held-out texts (studies/logit_bias/README.md). The most direct way the same network can learn the
reward from N scored samples is to regress it: the network with a scalar head on its last hidden state, trained
on each text's prompt-centred reward. Its held-out ρ as N grows says how many samples a policy with this network
needs for a given share; a preference loss expresses the same ranking only through next-token probabilities,
which is harder (studies/ceiling_limits/README.md compares them). `bag_of_tokens` is the same question for a logit bias.

Loading separate from computing: these functions take a loaded causal LM and groups of (token ids, reward), the
ids being the whole sequence the policy scores (its prompt context followed by the completion).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from sentiment_dpo.distributed import map_length_sorted
from within_prompt import Group, centre


class RewardRegressor(torch.nn.Module):
    """A causal LM's transformer (shared, trained in place) with a scalar head on the last real token's state."""

    def __init__(self, causal_lm, pad_token_id: int) -> None:
        super().__init__()
        self.body = causal_lm.base_model
        self.head = torch.nn.Linear(causal_lm.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # starts predicting 0 for every text: no ranking, ρ undefined
        torch.nn.init.zeros_(self.head.bias)
        self.pad_token_id = pad_token_id

    def forward(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        """(texts,) predicted rewards. Right padding, so positions match an unpadded pass; the last real token
        sees the whole text through causal attention."""
        device = self.head.weight.device
        lengths = torch.tensor([len(s) for s in sequences])
        ids = torch.full((len(sequences), int(lengths.max())), self.pad_token_id, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
        mask = (torch.arange(ids.size(1))[None] < lengths[:, None]).long()
        hidden = self.body(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state  # (B, T, H)
        return self.head(hidden[torch.arange(len(sequences)), lengths - 1]).squeeze(-1)


def centred_squared_error(predicted: torch.Tensor, rewards: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Mean over texts of (centred prediction − centred reward)², both centred within each prompt (`prompts`:
    the prompt of each text). Only the within-prompt ranking matters to a policy, so prompt-level offsets are not
    fitted; for a prompt of n texts the sum is 1/n of the sum over all its pairs of the squared error of the
    predicted reward difference."""
    return (centre(predicted, prompts) - centre(rewards, prompts)).pow(2).mean()


def fit_reward_regressor(causal_lm, pad_token_id: int, groups: Sequence[Group], epochs: float, learning_rate: float,
                         prompts_per_step: int, seed: int) -> RewardRegressor:
    """Train every weight of `causal_lm` (in place) and a new head on `centred_squared_error` over `groups` (each
    needs ≥ 2 texts): AdamW, 10% linear warm-up then linear decay, gradient norm clipped at 1, whole prompts per
    step. Dropout stays off, as in the project's DPO training."""
    if not groups or min(len(group) for group in groups) < 2:
        raise ValueError("every group needs at least two texts: the loss compares a prompt's texts")
    regressor = RewardRegressor(causal_lm, pad_token_id)
    regressor.eval()
    generator = random.Random(seed)
    torch.manual_seed(seed)
    steps = max(1, round(math.ceil(len(groups) / prompts_per_step) * epochs))
    warm_up = max(1, int(0.1 * steps))
    optimizer = torch.optim.AdamW(regressor.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warm_up) * max(0.0, (steps - step) / steps))
    progress = tqdm(total=steps, desc="reward regression", unit="step")
    step = 0
    while step < steps:
        order = list(range(len(groups)))
        generator.shuffle(order)
        for start in range(0, len(order), prompts_per_step):
            if step == steps:
                break
            batch = [groups[k] for k in order[start : start + prompts_per_step]]
            predicted = regressor([ids for group in batch for ids, _ in group])
            rewards = torch.tensor([r for group in batch for _, r in group], dtype=predicted.dtype,
                                   device=predicted.device)
            prompts = torch.tensor([k for k, group in enumerate(batch) for _ in group], device=predicted.device)
            loss = centred_squared_error(predicted, rewards, prompts)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(regressor.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.3f}")
    progress.close()
    return regressor


@torch.inference_mode()
def predict_rewards(regressor: RewardRegressor, groups: Sequence[Group], batch_size: int) -> torch.Tensor:
    """(texts,) predictions for every text of `groups`, in order, computed in length-sorted batches."""
    sequences = [ids for group in groups for ids, _ in group]
    progress = tqdm(total=-(-len(sequences) // batch_size), desc="predictions", unit="batch")

    def predict(_: int, batch: list[int]) -> list[float]:
        progress.update()
        return regressor([sequences[k] for k in batch]).tolist()

    out = map_length_sorted([len(s) for s in sequences], batch_size, predict, across_processes=False)
    progress.close()
    return torch.tensor(out, dtype=torch.float64)
