"""Evaluating a policy while it trains: fixed held-out prompts, pure sampling, scored against the frozen reference.

One `CheckpointEvaluator` per sweep holds the reference, the reward model and the prompts; `CurveCallback`
calls it every N optimizer steps, so each training traces a curve of (KL, reward, diversity) points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback

from .generation import completion_logprobs, sample_completions
from .metrics import kl_estimate, per_prompt_means, perplexity, self_bleu, summarize, win_rate
from .models import LoadedModel
from .scoring import score_texts

logger = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    prompts: list[str]
    max_new_tokens: int
    temperature: float
    batch_size: int
    seed: int  # the same sampling seed at every checkpoint: differences come from the policy, not the draw


class CheckpointEvaluator:
    def __init__(self, reference: LoadedModel, reward: LoadedModel, positive_index: int, settings: EvalSettings):
        self.reference, self.reward, self.positive, self.settings = reference, reward, positive_index, settings
        # The reference's mean reward per held-out prompt, which win rates compare against: set by
        # `evaluate_reference`, or from its saved samples (`reference_rewards_from`) when a sweep resumes.
        self.reference_rewards: list[float] | None = None

    def evaluate(self, model, tokenizer, is_reference: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Metrics of `model` on the held-out prompts, and its samples (prompt, completion, reward, p_positive).

        Leaves the model's train/eval mode and the global torch RNG as they were, so training is unaffected.
        """
        if not is_reference and self.reference_rewards is None:
            raise RuntimeError("evaluate the reference (or load its rewards) before any policy")
        s = self.settings
        was_training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[]):
            samples = sample_completions(model, tokenizer, s.prompts, 1, s.max_new_tokens, s.temperature,
                                         s.batch_size, s.seed, desc="checkpoint samples")
        policy_logps = completion_logprobs(model, tokenizer, samples, s.batch_size)
        model.train(was_training)
        rewards, p_positive = score_texts(self.reward.model, self.reward.tokenizer,
                                          [x.prompt + x.completion for x in samples], self.positive, s.batch_size,
                                          desc="checkpoint scores")
        reference_logps = completion_logprobs(self.reference.model, self.reference.tokenizer, samples, s.batch_size)
        rewards_by_prompt = per_prompt_means([x.prompt_index for x in samples], rewards)
        if is_reference:
            self.reference_rewards = rewards_by_prompt
        completions = [x.completion for x in samples]
        metrics = summarize(completions, rewards, p_positive) | {
            "kl": kl_estimate(policy_logps, reference_logps),
            "win_rate": win_rate(rewards_by_prompt, self.reference_rewards),
            "self_bleu": self_bleu(completions),
            "reference_perplexity": perplexity(reference_logps, [len(x.completion_ids) for x in samples]),
        }
        rows = [{"prompt_index": x.prompt_index, "prompt": x.prompt, "completion": x.completion, "reward": r,
                 "p_positive": p} for x, r, p in zip(samples, rewards, p_positive)]
        return metrics, rows

    def evaluate_reference(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        return self.evaluate(self.reference.model, self.reference.tokenizer, is_reference=True)

    def reference_rewards_from(self, rows: list[dict[str, Any]]) -> None:
        """Take the reference's per-prompt rewards from the sample rows `evaluate_reference` returned earlier."""
        self.reference_rewards = per_prompt_means([r["prompt_index"] for r in rows], [r["reward"] for r in rows])


class CurveCallback(TrainerCallback):
    """Calls `on_checkpoint(model, step)` every `every` optimizer steps and after the last one."""

    def __init__(self, on_checkpoint: Callable[[Any, int], None], every: int):
        self.on_checkpoint, self.every = on_checkpoint, every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.on_checkpoint(model, state.global_step)
