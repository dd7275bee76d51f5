"""How well the best bag-of-tokens score ranks a prompt's texts as the reward does: the limit of a logit bias.

A logit bias π(a|s) ∝ π_ref(a|s)·exp(b_a) has an implicit reward log π/π_ref close to Σ_t b_{y_t}, a score that
only counts tokens. For a small tilt a policy's KL overhead is about 1/ρ², ρ the within-prompt correlation of
its implicit reward with the reward (studies/logit_bias/README.md), so the ρ of the best such score on
held-out texts bounds what any bias can reach. The best score is estimated by ridge regression of each text's
prompt-centred reward on its prompt-centred token counts; fitted on more samples, its held-out ρ rises and its
ρ on its own training texts falls, and where they meet is the limit.

Pure functions: groups of (token ids, reward) per prompt (or their `token_counts`) in, numbers out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch

from within_prompt import Group, centre, correlation


class TokenCounts(NamedTuple):
    counts: torch.Tensor  # sparse (texts, vocab)
    rewards: torch.Tensor  # (texts,)
    prompts: torch.Tensor  # (texts,): the prompt each text belongs to


def token_counts(groups: Sequence[Group], vocab_size: int) -> TokenCounts:
    """Each text's token counts, reward and prompt; built once for texts that are scored repeatedly."""
    rows, cols, rewards, prompts = [], [], [], []
    text = 0
    for prompt, group in enumerate(groups):
        for ids, reward in group:
            rows += [text] * len(ids)
            cols += list(ids)
            rewards.append(reward)
            prompts.append(prompt)
            text += 1
    counts = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long), torch.ones(len(rows)),
                                     (text, vocab_size), dtype=torch.float64, check_invariants=True).coalesce()
    return TokenCounts(counts, torch.tensor(rewards, dtype=torch.float64), torch.tensor(prompts, dtype=torch.long))


def fit_token_scores(groups: Sequence[Group], vocab_size: int, l2: float) -> torch.Tensor:
    """Ridge regression of prompt-centred rewards on prompt-centred token counts: one score per token (vocab,).

    Solves (X_cᵀX_c + l2·I) w = X_cᵀ y_c without forming the dense centred X_c: X_cᵀX_c = XᵀX − Σ_p n_p m_p m_pᵀ
    (m_p a prompt's mean counts, n_p its texts) and X_cᵀ y_c = Xᵀ y_c, since y_c sums to 0 within each prompt.
    """
    # only tokens the samples contain get a column: a 50,257-token vocabulary would not fit as a dense Gram matrix
    seen = sorted({token for group in groups for ids, _ in group for token in ids})
    column = {token: k for k, token in enumerate(seen)}
    counts, rewards, prompts = token_counts([[([column[t] for t in ids], r) for ids, r in group] for group in groups],
                                            len(seen))
    size = int(prompts.max()) + 1
    per_prompt = torch.bincount(prompts, minlength=size).to(torch.float64)
    rows, columns = counts.indices()
    prompt_sums = torch.zeros(size, len(seen), dtype=torch.float64).index_put_(  # (prompts, tokens)
        (prompts[rows], columns), counts.values(), accumulate=True)
    with warnings.catch_warnings():  # torch calls the sparse-sparse product's CSR path beta; the product is exact
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        gram = torch.sparse.mm(counts.t(), counts).to_dense()
    gram -= prompt_sums.T @ (prompt_sums / per_prompt[:, None])
    target = torch.sparse.mm(counts.t(), centre(rewards, prompts)[:, None]).squeeze(1)
    scores = torch.zeros(vocab_size, dtype=torch.float64)
    scores[seen] = torch.linalg.solve(gram + l2 * torch.eye(len(seen), dtype=torch.float64), target)
    return scores  # unseen tokens: 0, which the ridge penalty would give them too


def within_prompt_rho(texts: TokenCounts, scores: torch.Tensor) -> float:
    """Correlation of Σ_t scores[y_t] with the reward over all texts, each centred within its prompt."""
    counts, rewards, prompts = texts
    return correlation(torch.sparse.mm(counts, scores[:, None]).squeeze(1), rewards, prompts)
