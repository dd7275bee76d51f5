#!/usr/bin/env python3
"""How far can training the policy's every weight go on this reward? Fit the policy's own network, with a scalar
head on its last hidden state, to regress the prompt-centred reward of the first N training samples of a run,
for N doubling up to all of them, and print its within-prompt correlation ρ with the reward on its own samples
and on the ceiling's held-out reference samples. A policy whose implicit reward ranks held-out texts with ρ gets
about ρ of the ceiling's reward gain at its KL (overhead 1/ρ²); `bag_of_tokens_limit.py` asks the same of a
logit bias. Each fit trains the whole network: minutes per 10,000 samples on 2 cores.

    python3 studies/ceiling_limits/network_reward_limit.py runs/default
    python3 studies/ceiling_limits/network_reward_limit.py runs/big --start 16000 --held-out-prompts 64
"""

import argparse
import sys
from pathlib import Path
from sentiment_dpo import layout



def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run directory with data/generations.jsonl (run_pipeline.py or sweep.py)")
    parser.add_argument("--held-out", type=Path, help="scored reference samples of held-out prompts, with their "
                        "ceiling_samples.config.yaml beside them (default: the run's ceiling samples, "
                        "results/reference/ or reference/ceiling_samples.jsonl)")
    parser.add_argument("--held-out-prompts", type=int, default=64,
                        help="score the held-out samples of the first this many prompts (all: 0)")
    parser.add_argument("--start", type=int, default=1000, help="the first N; doubled up to all the samples")
    parser.add_argument("--epochs", type=float, default=2.0, help="passes over the N samples per fit")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--prompts-per-step", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256, help="texts per forward pass when predicting")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)

    from sentiment_dpo.evaluation import ceiling_samples
    from sentiment_dpo import files
    from sentiment_dpo.errors import PipelineError

    run_dir = Path(args.run_dir)
    try:
        held_out = args.held_out or ceiling_samples.of_run(run_dir)
        for name, least in (("start", 1), ("prompts_per_step", 1), ("batch_size", 1), ("held_out_prompts", 0)):
            if getattr(args, name) < least:
                raise PipelineError(f"--{name.replace('_', '-')} must be ≥ {least}, got {getattr(args, name)}")
        for name in ("epochs", "learning_rate"):
            if getattr(args, name) <= 0:
                raise PipelineError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
        generation = files.read_yaml(run_dir / layout.GENERATION_CONFIG, "python3 text_generation.py")
        train = files.read_jsonl(run_dir / layout.GENERATIONS, ("prompt", "completion_ids", "reward"),
                              "python3 text_generation.py")
        record = files.read_yaml(held_out.with_name(layout.CEILING_RECORD), "python3 calculate_metrics.py")
        held = files.read_jsonl(held_out, ("prompt_index", "completion", "reward"), "python3 calculate_metrics.py")
        held_prompts = _held_out_prompts(generation, record)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import torch

    from sentiment_dpo.models import load_policy, prompt_ids
    from reward_regression import fit_reward_regressor, predict_rewards
    from within_prompt import correlation

    def rho(regressor, groups) -> float:
        rewards = torch.tensor([r for group in groups for _, r in group], dtype=torch.float64)
        prompts = torch.tensor([k for k, group in enumerate(groups) for _ in group])
        return correlation(predict_rewards(regressor, groups, args.batch_size), rewards, prompts)

    tokenizer = load_policy(generation["policy"], torch.device("cpu")).tokenizer
    contexts: dict[str, list[int]] = {}  # each prompt tokenized once, not once per sample

    def context(prompt: str) -> list[int]:
        if prompt not in contexts:
            contexts[prompt] = prompt_ids(tokenizer, prompt)
        return contexts[prompt]

    held_groups: dict[int, list] = {}
    for row in held:  # the held-out file keeps text only: tokenised as the policy would continue its prompt
        if args.held_out_prompts and row["prompt_index"] >= args.held_out_prompts:
            continue
        ids = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        held_groups.setdefault(row["prompt_index"], []).append(
            (context(held_prompts[row["prompt_index"]]) + ids, row["reward"]))
    held_list = list(held_groups.values())
    print(f"{len(train)} training samples of {run_dir}; {sum(map(len, held_list))} held-out samples of "
          f"{len(held_list)} prompts from {held_out}; {args.epochs:g} epochs, learning rate {args.learning_rate:g}")
    print(f"{'samples':>8}  {'rho train':>9}  {'rho held-out':>12}  {'1/rho^2 held-out':>16}")
    size = args.start
    while True:
        size = min(size, len(train))
        groups: dict[str, list] = {}
        for row in train[:size]:
            groups.setdefault(row["prompt"], []).append((context(row["prompt"]) + row["completion_ids"], row["reward"]))
        fitted_groups = [g for g in groups.values() if len(g) > 1]  # a lone text has no within-prompt rank
        if not fitted_groups:
            print(f"error: no prompt has two of the first {size} samples, and the fit compares a prompt's texts; "
                  "pass a larger --start or a run drawn with --samples-per-prompt ≥ 2", file=sys.stderr)
            return 2
        policy = load_policy(generation["policy"], torch.device("cpu"))  # every fit starts from the policy
        regressor = fit_reward_regressor(policy.model, tokenizer.pad_token_id, fitted_groups, args.epochs,
                                         args.learning_rate, args.prompts_per_step, args.seed)
        fitted, held_rho = rho(regressor, fitted_groups), rho(regressor, held_list)
        print(f"{size:>8}  {fitted:>9.3f}  {held_rho:>12.3f}  "
              f"{1 / held_rho ** 2 if held_rho > 0 else float('inf'):>15.1f}×", flush=True)
        if size == len(train):
            return 0
        size *= 2


def _held_out_prompts(generation: dict, record: dict) -> list[str]:
    """The prompts the ceiling samples were drawn for, redrawn as stage 4 drew them and checked by their hash."""
    from sentiment_dpo.evaluation.ceiling_samples import prompts_digest
    from sentiment_dpo.errors import PipelineError
    from sentiment_dpo.prompts import PromptSettings, choose_prompts, prompt_pools

    pools = prompt_pools(PromptSettings.from_generation(generation))  # the built-in reviews' word prompts only
    prompts = choose_prompts(pools, "heldout", record["num_prompts"], record["seed"])
    if prompts_digest(prompts) != record["prompts_sha256"]:
        raise PipelineError("the held-out samples were drawn for other prompts than this run's held-out prompts; "
                            "pass the ceiling samples of a run with the same text_generation.py prompt settings")
    return prompts


if __name__ == "__main__":
    sys.exit(main())
