#!/usr/bin/env python3
"""Generation + scoring throughput: one sample at a time through `transformers` pipelines vs the project's path.

Both sides run in this one process, one after the other, on the same prompts and sampling settings
(pure sampling, N new tokens); only the ratio is comparable across machines.

    python3 benchmarks/bench_generation.py                       # embedded policy + embedded reward
    python3 benchmarks/bench_generation.py --policy gpt2-124m-random --num-samples 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models import RANDOM_124M, load_bench_policy  # noqa: E402


def baseline(policy, reward, prompts: list[str], max_new_tokens: int) -> list[float]:
    """The naive loop: a text-generation pipeline call per prompt, then a text-classification call per text."""
    from transformers import pipeline

    from sentiment_dpo.models import positive_label_index

    generate = pipeline("text-generation", model=policy.model, tokenizer=policy.tokenizer, device=-1)
    positive_name = reward.model.config.id2label[positive_label_index(reward.model.config.id2label)]
    classify = pipeline("text-classification", model=reward.model, tokenizer=reward.tokenizer, device=-1, top_k=None)
    scores = []
    for prompt in prompts:
        text = generate(prompt, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                        pad_token_id=policy.tokenizer.pad_token_id)[0]["generated_text"]
        labels = classify(text)[0]  # every class's score, for one text
        scores.append(next(c["score"] for c in labels if c["label"] == positive_name))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="embedded", help=f"'embedded', '{RANDOM_124M}', or a folder / hub id")
    parser.add_argument("--reward", default="embedded")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    import torch

    from sentiment_dpo.models import load_reward
    from sentiment_dpo.prompts import choose_prompts
    from sentiment_dpo.sample_and_score import sample_and_score

    torch.manual_seed(0)
    device = torch.device("cpu")
    policy = load_bench_policy(args.policy, device)
    reward = load_reward(args.reward, device)
    prompts = choose_prompts("review", "heldout", args.num_samples, 5, seed=0)

    start = time.perf_counter()
    baseline(policy, reward, prompts, args.max_new_tokens)
    baseline_s = time.perf_counter() - start

    start = time.perf_counter()
    sample_and_score(policy, reward, prompts, 1, args.max_new_tokens, 1.0, args.batch_size, seed=0)
    ours_s = time.perf_counter() - start

    params = sum(p.numel() for p in policy.model.parameters()) / 1e6
    print(f"generation+scoring, {args.num_samples} samples x {args.max_new_tokens} tokens, policy {policy.spec} "
          f"({params:.1f}M params), {torch.get_num_threads()} threads")
    print(f"  baseline (one at a time, pipelines): {baseline_s:7.1f} s  {args.num_samples / baseline_s:7.1f} samples/s")
    print(f"  ours (batched, KV cache, bucketed):  {ours_s:7.1f} s  {args.num_samples / ours_s:7.1f} samples/s")
    print(f"  speed-up: {baseline_s / ours_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
