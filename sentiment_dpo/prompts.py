"""Choosing the prompts a stage samples from: training prompts for the preference data, held-out ones for metrics."""

from __future__ import annotations

import math
import random

from .corpus import load_corpus, review_prompts
from .errors import PipelineError


def choose_prompts(mode: str, split: str, count: int, words: int, seed: int) -> list[str]:
    """`count` prompts: seeded draws from the review prompts of `split` ('train' or 'heldout'), or empty ('bos').

    The splits come from disjoint reviews, but stock phrases and reviewers' signatures recur across reviews, so
    the held-out pool leaves out every prompt that also opens a sentence of the training reviews: metrics never
    see a prompt that could have produced training pairs.
    """
    if mode == "bos":
        return [""] * count
    corpus = load_corpus()
    pool = review_prompts(corpus.train_reviews, words)
    if split == "heldout":
        seen = set(pool)
        pool = [p for p in review_prompts(corpus.heldout_reviews, words) if p not in seen]
    if count > len(pool):
        fix = ("use fewer --num-samples, more --samples-per-prompt, or fewer --prompt-words" if split == "train" else
               "use fewer --num-prompts (a sweep: --eval-prompts), or rerun `python3 text_generation.py` with fewer "
               "--prompt-words")
        raise PipelineError(f"asked for {count} {split} prompts but the corpus has {len(pool)} of {words} words; "
                            f"{fix}")
    return random.Random(seed).sample(pool, count)


def prompts_needed(num_samples: int, samples_per_prompt: int) -> int:
    return math.ceil(num_samples / samples_per_prompt)
