#!/usr/bin/env python3
"""Generation + scoring throughput: `transformers` pipelines (batched, and one sample at a time) vs the project's path.

All sides run in this one process on the same prompts (BOS + prompt) and sampling settings (pure sampling, N new
tokens), each warmed up once and timed over --repeats runs (the median is printed); only the ratios are
comparable across machines. The batched pipeline is the fair baseline: the same batch size, left padding.

    python3 benchmarks/bench_generation.py                       # embedded policy + embedded reward
    python3 benchmarks/bench_generation.py --policy gpt2-124m-random --num-samples 32
"""

from __future__ import annotations

import argparse
import sys
import time


from bench_models import RANDOM_124M, load_bench_policy  # noqa: E402


def pipelines(policy, reward, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[float]:
    """transformers' text-generation and text-classification pipelines over all prompts, `batch_size` at a time
    (1: the naive loop). The policy's tokenizer pads on the left, so batched generation is correct."""
    from transformers import pipeline

    from sentiment_dpo.generation import pure_sampling_config
    from sentiment_dpo.models import prompt_text

    generate = pipeline("text-generation", model=policy.model, tokenizer=policy.tokenizer, device=-1)
    positive_name = reward.model.model.config.id2label[reward.positive]
    classify = pipeline("text-classification", model=reward.model.model, tokenizer=reward.model.tokenizer, device=-1,
                        top_k=None)
    config = pure_sampling_config(policy.tokenizer, max_new_tokens, 1.0)
    outputs = generate([prompt_text(policy.tokenizer, p) for p in prompts], batch_size=batch_size,
                       generation_config=config, return_full_text=True)
    texts = [out[0]["generated_text"].removeprefix(policy.tokenizer.bos_token or "") for out in outputs]
    labels = classify(texts, batch_size=batch_size, truncation=True)
    return [next(c["score"] for c in per_text if c["label"] == positive_name) for per_text in labels]


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="embedded", help=f"'embedded', '{RANDOM_124M}', or a folder / hub id")
    parser.add_argument("--reward", default="embedded")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from sentiment_dpo.models import load_classifier
    from sentiment_dpo.prompts import choose_prompts
    from sentiment_dpo.stages.generate import sample_and_score

    torch.manual_seed(0)
    device = torch.device("cpu")
    policy = load_bench_policy(args.policy, device)
    reward = load_classifier(args.reward, device)
    prompts = choose_prompts("review", "heldout", args.num_samples, 5, seed=0)

    n, tokens = args.num_samples, args.max_new_tokens
    batched_s = timed(lambda: pipelines(policy, reward, prompts, tokens, args.batch_size), args.repeats)
    one_s = timed(lambda: pipelines(policy, reward, prompts, tokens, 1), args.repeats)
    ours_s = timed(lambda: sample_and_score(policy, reward, prompts, 1, tokens, 1.0, args.batch_size, seed=0),
                   args.repeats)

    params = sum(p.numel() for p in policy.model.parameters()) / 1e6
    print(f"generation+scoring, {n} samples x {tokens} tokens, policy {policy.spec} ({params:.1f}M params), "
          f"{torch.get_num_threads()} threads, median of {args.repeats} after a warm-up")
    print(f"  baseline: pipelines, batched ({args.batch_size}): {batched_s:7.2f} s  {n / batched_s:7.1f} samples/s")
    print(f"  pipelines, one at a time:          {one_s:7.2f} s  {n / one_s:7.1f} samples/s")
    print(f"  ours (batched, KV cache, bucketed): {ours_s:7.2f} s  {n / ours_s:7.1f} samples/s")
    print(f"  speed-up vs batched pipelines: {batched_s / ours_s:.2f}x; vs one at a time: {one_s / ours_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
