"""The one evaluator: a policy against the frozen reference on held-out prompts, for stage 4 and for every sweep
checkpoint alike. It takes loaded models and returns numbers and sample rows; loading and writing stay with
the callers.

Metrics of a policy: reward (the training classifier's positive logit, or a reward function's value) and
p_positive (a classifier's probability; a function has none), the held-out judge's p_positive (a second classifier
never used for training; `judge_score`, the value, for a judge function), sequence-level KL(policy ‖ reference) from the
policy's own pure samples (`kl`: the Rao-Blackwellised estimate, the exact per-token KL summed along each sample;
`kl_monte_carlo`: the mean log-ratio; both unbiased, the first with the lower variance), win rate against the
reference's samples, distinct-1/2/3, word entropy, self-BLEU and the perplexity of the samples under the reference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..generation import (OWN_DISTRIBUTION_TEMPERATURE, Sample, completion_comparison, completion_logprobs,
                          sample_completions)
from .metrics import JUDGE_COLUMNS, kl_estimate, mean, per_prompt_means, perplexity, self_bleu, summarize, win_rate
from ..models import LoadedModel
from ..scoring import Scorer

logger = logging.getLogger(__name__)

# The metrics that compare a policy with the reference (the rest describe one model's samples).
PAIR_METRICS = ("kl", "kl_monte_carlo", "win_rate")


def judge_column(judge: Scorer) -> str:
    """Each sample's judge column: a classifier judge's positive probability, a function judge's value."""
    return "judge_p_positive" if judge.gives_probability else "judge_score"


@dataclass
class EvalSettings:
    prompts: list[str]
    samples_per_prompt: int
    max_new_tokens: int
    batch_size: int
    seed: int  # the same sampling seed for every policy: differences come from the policy, not the draw


@contextmanager
def eval_mode(model) -> Iterator[None]:
    """`model` in eval mode (no dropout) for the body, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class Evaluator:
    def __init__(self, reference: LoadedModel, reward: Scorer, judge: Scorer | None, settings: EvalSettings):
        self.reference, self.reward, self.judge, self.settings = reference, reward, judge, settings
        # The reference's mean reward per held-out prompt, which win rates compare against: set by
        # `evaluate_reference`, or from its saved samples (`reference_rewards_from`) when a sweep resumes.
        self.reference_rewards: list[float] | None = None

    def sample(self, model, tokenizer, samples_per_prompt: int, desc: str) -> list[Sample]:
        """Pure samples of `model` on the held-out prompts; leaves its train/eval mode and the global torch RNG as
        they were, so a training being evaluated is unaffected."""
        with eval_mode(model):
            return self._sample(model, tokenizer, samples_per_prompt, desc)

    def _sample(self, model, tokenizer, samples_per_prompt: int, desc: str) -> list[Sample]:
        s = self.settings
        with torch.random.fork_rng(devices=[]):
            return sample_completions(model, tokenizer, s.prompts, samples_per_prompt, s.max_new_tokens,
                                      OWN_DISTRIBUTION_TEMPERATURE, s.batch_size, s.seed, desc=desc)

    def score(self, samples: list[Sample], desc: str) -> dict[str, list[float]]:
        """reward, p_positive (a classifier reward's) and (with a judge) its `judge_column` of each sample."""
        texts = [x.prompt + x.completion for x in samples]
        rewards, p_positive = self.reward.score(texts, self.settings.batch_size, desc=f"{desc}: reward")
        scores = {"reward": rewards} | ({} if p_positive is None else {"p_positive": p_positive})
        if self.judge is not None:
            values, probabilities = self.judge.score(texts, self.settings.batch_size, desc=f"{desc}: judge")
            scores[judge_column(self.judge)] = values if probabilities is None else probabilities
        return scores

    def evaluate(self, model, tokenizer, is_reference: bool = False,
                 desc: str = "policy") -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Metrics of `model` on the held-out prompts, and its samples (prompt, completion and scores)."""
        if not is_reference and self.reference_rewards is None:
            raise RuntimeError("evaluate the reference (or load its rewards) before any policy")
        s = self.settings
        with eval_mode(model):
            samples = self._sample(model, tokenizer, s.samples_per_prompt, desc=f"sampling {desc}")
            if is_reference:  # KL(reference ‖ reference) is 0: its own log-probs serve for its perplexity
                policy_logps = reference_logps = completion_logprobs(model, tokenizer, samples, s.batch_size)
                token_kls = [0.0] * len(samples)
            else:
                policy_logps, reference_logps, token_kls = completion_comparison(
                    model, self.reference.model, tokenizer, samples, s.batch_size)
        scores = self.score(samples, desc)
        rewards_by_prompt = per_prompt_means([x.prompt_index for x in samples], scores["reward"])
        if is_reference:
            self.reference_rewards = rewards_by_prompt
        completions = [x.completion for x in samples]
        metrics = summarize(completions, scores["reward"], scores.get("p_positive")) | {
            "kl": mean(token_kls),
            "kl_monte_carlo": kl_estimate(policy_logps, reference_logps),
            "win_rate": win_rate(rewards_by_prompt, self.reference_rewards),
            "self_bleu": self_bleu(completions),
            "reference_perplexity": perplexity(reference_logps, [len(x.completion_ids) for x in samples]),
        }
        for column in JUDGE_COLUMNS.keys() & scores.keys():
            metrics[f"{column}_mean"] = mean(scores[column])
        # token_kl: Σ_t KL(π ‖ π_ref) of the next-token distributions along each sample, whose mean is `kl`;
        # log_ratio: log π(y|x) − log π_ref(y|x), whose mean is `kl_monte_carlo`
        rows = [{"prompt_index": x.prompt_index, "prompt": x.prompt, "completion": x.completion,
                 **{name: values[k] for name, values in scores.items()},
                 "token_kl": token_kls[k], "log_ratio": policy_logps[k] - reference_logps[k]}
                for k, x in enumerate(samples)]
        return metrics, rows

    def evaluate_reference(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        return self.evaluate(self.reference.model, self.reference.tokenizer, is_reference=True, desc="reference")

    def reference_rewards_from(self, rows: list[dict[str, Any]]) -> None:
        """Take the reference's per-prompt rewards from the sample rows `evaluate_reference` returned earlier."""
        self.reference_rewards = per_prompt_means([r["prompt_index"] for r in rows], [r["reward"] for r in rows])
