"""Where a trained logit bias starts: the reward model's own score of each vocabulary token.

Why: 8,000 scored samples estimate 4,096 token biases noisily (on the embedded default the bias correlates with
the reward at 0.77 on its training samples but 0.46 on new ones). The reward model can say directly how positive
each token is: scored inside a few short review phrases, its token scores alone predict the reward of new samples
about as well as the bias DPO fits from 8,000 of them, and DPO started from them, rather than from zero, spends
its samples on what the scores miss (studies/token_score_start/README.md at commit e3d212a).

The start is the KL-regularised optimum for the reward k·Σ_t s(token_t): b = k·s/β, with s the token scores and
k the reward per unit of score, fitted on the training pairs (least squares of each pair's reward difference on
its score difference).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..scoring import Classifier

logger = logging.getLogger(__name__)

# Short review phrases each token is scored in ({} is the token's text, with its own leading space if it has one).
# Averaging the phrases evens out what one context does to a token (studies/token_score_start/README.md at commit
# e3d212a: one phrase alone correlates 0.50 with the reward of new samples, the eight 0.51).
TEMPLATES = ("the movie was{}", "{} movie", "overall , it is{} and", "the acting is{} , the plot", "a{} film .",
             "this is{} .", "i found it{}", "the story is{} but")


def token_scores(tokenizer, classifier: Classifier, vocab_size: int, batch_size: int,
                 templates: tuple[str, ...] = TEMPLATES) -> torch.Tensor:
    """(vocab_size,): each token's reward in each template, standardised over the vocabulary per template (so the
    average token scores 0 and no template dominates), averaged over the templates. Ids the tokenizer cannot
    decode (an embedding matrix padded past the vocabulary) score 0."""
    known = min(vocab_size, len(tokenizer))
    texts = [tokenizer.decode([token]) for token in range(known)]
    total = torch.zeros(vocab_size)
    for template in templates:
        rewards, _ = classifier.score([template.format(text) for text in texts], batch_size,
                                      desc=f"token scores '{template}'")
        # in float64: rewards whose spread is small next to their mean lose digits to the centring in float32
        values = torch.tensor(rewards, dtype=torch.float64)
        total[:known] += ((values - values.mean()) / values.std().clamp_min(1e-8)).float()
    return total / len(templates)


def reward_per_score(scores: torch.Tensor, chosen_ids: list[list[int]], rejected_ids: list[list[int]],
                     reward_gaps: list[float]) -> float:
    """k: the least-squares slope (through 0) of each pair's reward difference (chosen minus rejected) on its
    difference in summed token scores of the completions; the pair's prompt cancels in both."""
    chosen = torch.tensor([float(scores[ids].sum()) for ids in chosen_ids])
    rejected = torch.tensor([float(scores[ids].sum()) for ids in rejected_ids])
    gap = torch.tensor(reward_gaps, dtype=torch.float32)
    difference = chosen - rejected
    denominator = float(difference @ difference)
    return float(difference @ gap) / denominator if denominator > 0 else 0.0


@dataclass(frozen=True)
class TokenPrior:
    """The reward model's token scores s and the reward per unit of score k on the training pairs."""

    scores: torch.Tensor
    reward_per_score: float

    def bias(self, beta: float) -> torch.Tensor:
        """The starting bias b = k·s/β."""
        return self.reward_per_score * self.scores / beta

    def record(self) -> dict[str, Any]:
        return {"templates": list(TEMPLATES), "reward_per_score": self.reward_per_score}


def fit_token_prior(tokenizer, classifier: Classifier, chosen_ids: list[list[int]], rejected_ids: list[list[int]],
                    reward_gaps: list[float], vocab_size: int, batch_size: int) -> TokenPrior:
    """Score the vocabulary and fit k on the pairs (their completions' token ids and reward gaps). A k ≤ 0 (the
    scores do not rise with the reward on these pairs) becomes 0: the bias then starts from zero."""
    scores = token_scores(tokenizer, classifier, vocab_size, batch_size)
    k = reward_per_score(scores, chosen_ids, rejected_ids, reward_gaps)
    if k <= 0:
        logger.warning("the reward model's token scores do not rise with the reward on these pairs (k = %.3g): "
                       "the logit bias starts from zero", k)
        k = 0.0
    logger.info("token scores of the reward model: k = %.4f reward per unit score", k)
    return TokenPrior(scores, k)
