"""Statistics of texts grouped by prompt. A policy only reweights each prompt's own continuations, so how well a
score ranks texts as the reward does is measured within prompts: both are centred on their prompt's mean first."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Group = Sequence[tuple[Sequence[int], float]]  # one prompt's texts: (token ids, reward)


def centre(values: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """`values` (texts, ...) minus the mean of their prompt's texts; `prompts` (texts,) the prompt of each text."""
    size = int(prompts.max()) + 1
    sums = torch.zeros((size, *values.shape[1:]), dtype=values.dtype, device=values.device)
    sums.index_add_(0, prompts, values)
    per_prompt = torch.bincount(prompts, minlength=size).to(values.dtype).reshape(-1, *[1] * (values.dim() - 1))
    return values - (sums / per_prompt)[prompts]


def correlation(predicted: torch.Tensor, actual: torch.Tensor, prompts: torch.Tensor) -> float:
    """Pearson correlation of `predicted` with `actual` (texts,) after centring both within each prompt (ρ)."""
    predicted, actual = centre(predicted, prompts), centre(actual, prompts)
    return float(predicted @ actual / (predicted.norm() * actual.norm()))
