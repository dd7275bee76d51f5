#!/usr/bin/env python3
"""How far can a logit bias go on this reward? Fit the best bag-of-tokens score (ridge regression of prompt-centred
reward on token counts) to the first N training samples of a run, for N doubling up to all of them, and print
its within-prompt correlation ρ with the reward on its own samples and on the ceiling's held-out reference
samples. A policy's KL overhead is about 1/ρ²; where the two ρ meet as N grows is the limit of any logit bias.

    python3 studies/ceiling_limits/bag_of_tokens_limit.py runs/default
    python3 studies/ceiling_limits/bag_of_tokens_limit.py runs/my_sweep --held-out runs/my_sweep/reference/X.jsonl
"""

import argparse
import sys
from pathlib import Path
from sentiment_dpo import layout



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory with data/generations.jsonl (run_pipeline.py or sweep.py)")
    parser.add_argument("--held-out", type=Path, help="scored reference samples of held-out prompts (default: the "
                        "run's ceiling samples, results/reference/ or reference/ceiling_samples.jsonl)")
    parser.add_argument("--l2", type=float, default=10.0, help="ridge penalty (10 was best of 3/10/30/100 here)")
    args = parser.parse_args(argv)

    from sentiment_dpo.evaluation import ceiling_samples
    from sentiment_dpo import files
    from sentiment_dpo.errors import PipelineError

    run_dir = Path(args.run_dir)
    try:
        held_out = args.held_out or ceiling_samples.of_run(run_dir)
        if args.l2 <= 0:
            raise PipelineError(f"--l2 must be > 0, got {args.l2}")
        generation = files.read_yaml(run_dir / layout.GENERATION_CONFIG, "python3 text_generation.py")
        train = files.read_jsonl(run_dir / layout.GENERATIONS, ("prompt", "completion_ids", "reward"),
                              "python3 text_generation.py")
        held = files.read_jsonl(held_out, ("prompt_index", "completion", "reward"), "python3 calculate_metrics.py")
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import torch

    from bag_of_tokens import fit_token_scores, token_counts, within_prompt_rho
    from sentiment_dpo.models import load_policy

    policy = load_policy(generation["policy"], torch.device("cpu"))
    tokenizer, vocab_size = policy.tokenizer, policy.model.config.vocab_size
    held_groups: dict[int, list] = {}
    for row in held:  # the held-out file keeps text only: tokenised as the policy would continue a prompt
        ids = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        held_groups.setdefault(row["prompt_index"], []).append((ids, row["reward"]))
    held_texts = token_counts(list(held_groups.values()), vocab_size)  # scored once per fit below
    print(f"{len(train)} training samples of {run_dir}, {len(held)} held-out samples of {held_out}; ridge l2 "
          f"{args.l2:g}")
    print(f"{'samples':>8}  {'rho train':>9}  {'rho held-out':>12}  {'1/rho^2 held-out':>16}")
    size = 1000
    while True:
        size = min(size, len(train))
        groups: dict[str, list] = {}
        for row in train[:size]:
            groups.setdefault(row["prompt"], []).append((row["completion_ids"], row["reward"]))
        scores = fit_token_scores(list(groups.values()), vocab_size, args.l2)
        fitted = within_prompt_rho(token_counts(list(groups.values()), vocab_size), scores)
        rho = within_prompt_rho(held_texts, scores)
        print(f"{size:>8}  {fitted:>9.3f}  {rho:>12.3f}  {1 / rho ** 2 if rho > 0 else float('inf'):>15.1f}×",
              flush=True)
        if size == len(train):
            return 0
        size *= 2


if __name__ == "__main__":
    sys.exit(main())
