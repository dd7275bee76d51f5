#!/usr/bin/env python3
"""DPO training time per epoch and peak memory: TRL's DPOTrainer, tuned and with defaults, vs the project's.

Baseline (tuned): TRL's own DPO path (`SampledTokensDPOTrainer`: TRL's code on the same token ids) with the best
CPU setup TRL offers for this work: reference log-probs precomputed once, no activation checkpointing, fp32,
the same batch. Second line, TRL's `DPOConfig` defaults (activation checkpointing on, reference log-probs
recomputed every step by a separate reference model; bf16 off, since it fails on CPU). Both use TRL's tiled
log-prob head. Ours: `sentiment_dpo.methods.fast_dpo.FastDPOTrainer` with
`sentiment_dpo.methods.pair_methods.dpo_config` (reference log-probs computed once in a length-sorted pass, no
reference model kept, dense log-prob head on the completion tokens only, PyTorch's fused GELU, no activation
checkpointing). Same model, pairs, seed, learning
rate, batch size and epochs (default 3, as the pipeline trains), so both reach the same loss; the time covers
trainer setup (tokenising, reference pass) and training, divided by the epochs. Each side runs in its own
process so that peak memory is its own. Only ratios are comparable across machines.

    python3 benchmarks/bench_training.py --pairs runs/default/data/pairs.jsonl --num-pairs 512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from bench_models import RANDOM_124M, load_bench_policy  # noqa: E402


def run_side(side: str, pairs_path: Path, num_pairs: int, policy_spec: str, batch_size: int,
             learning_rate: float, epochs: float, lora_rank: int) -> dict:
    import torch

    from sentiment_dpo.config import TrainingConfig
    from sentiment_dpo.stages.train import pairs_dataset, read_pairs, train_policy

    device = torch.device("cpu")
    policy = load_bench_policy(policy_spec, device)
    dataset = pairs_dataset(read_pairs(pairs_path)[:num_pairs], policy.tokenizer)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        from trl import DPOConfig

        from sentiment_dpo.methods.fast_dpo import SampledTokensDPOTrainer

        if side in ("baseline", "defaults"):  # TRL's own path on the same token sequences
            tuned = {"precompute_ref_log_probs": True, "activation_checkpointing": False} if side == "baseline" else {}
            args = DPOConfig(output_dir=out, bf16=False, use_cpu=True, per_device_train_batch_size=batch_size,
                             learning_rate=learning_rate, num_train_epochs=epochs, report_to="none", save_strategy="no",
                             seed=0, disable_tqdm=True, **tuned)
            reference = None if side == "baseline" else load_bench_policy(policy_spec, device).model
            trainer = SampledTokensDPOTrainer(model=policy.model, ref_model=reference, args=args, train_dataset=dataset,
                                 processing_class=policy.tokenizer)
            trainer.train()
        else:  # the project's own training function
            # the same optimisation as TRL's side: its pair order (grouping by prompt changes the batches, hence the
            # loss), DPOConfig's default beta, hard labels, every weight trained
            config = TrainingConfig(batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
                                    warmup_ratio=0.0, lora_rank=lora_rank if side == "lora" else 0,
                                    group_by_prompt=False, beta=DPOConfig.beta, soft_labels=False,
                                    logit_bias=False)
            trainer = train_policy(policy.model, policy.tokenizer, dataset, config, Path(out), use_cpu=True)
        seconds = time.perf_counter() - start
    return {"side": side, "seconds_per_epoch": seconds / epochs,
            "train_loss": trainer.state.log_history[-1]["train_loss"], "steps": trainer.state.global_step,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="runs/default/data/pairs.jsonl",
                        help="a pairs.jsonl from prepare_dataset.py")
    parser.add_argument("--num-pairs", type=int, default=512)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--policy", default="embedded", help=f"'embedded', '{RANDOM_124M}', or a folder / hub id")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--lora-rank", type=int, default=0,
                        help="also time the project's path with LoRA adapters of this rank (another loss: not equal)")
    parser.add_argument("--side", choices=["baseline", "defaults", "ours", "lora"],
                        help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    if not Path(args.pairs).exists():
        print(f"error: {args.pairs} not found; run `python3 run_pipeline.py` first or pass --pairs", file=sys.stderr)
        return 2
    if args.side:
        print(json.dumps(run_side(args.side, Path(args.pairs), args.num_pairs, args.policy, args.batch_size,
                                  args.learning_rate, args.epochs, args.lora_rank)))
        return 0
    results = {}
    for side in ("baseline", "defaults", "ours", "lora")[: 4 if args.lora_rank else 3]:
        cmd = [sys.executable, __file__, "--side", side, "--pairs", args.pairs, "--num-pairs", str(args.num_pairs),
               "--policy", args.policy, "--batch-size", str(args.batch_size), "--learning-rate",
               str(args.learning_rate), "--epochs", str(args.epochs),
               "--lora-rank", str(args.lora_rank)]
        output = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[side] = json.loads(output.strip().splitlines()[-1])
    base, ours = results["baseline"], results["ours"]
    print(f"DPO training, {args.epochs:g} epochs of {args.num_pairs} pairs at batch {args.batch_size}, "
          f"policy {args.policy}")
    names = {"baseline": "baseline (TRL tuned: precomputed ref)", "defaults": "TRL defaults (separate ref model)",
             "ours": "ours (FastDPOTrainer)",
             "lora": f"ours + LoRA rank {args.lora_rank}"}
    for side, r in results.items():
        print(f"  {names[side]:44} {r['seconds_per_epoch']:7.1f} s/epoch  loss {r['train_loss']:.4f}  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB")
    defaults = results["defaults"]
    print(f"  speed-up per epoch vs tuned TRL: {base['seconds_per_epoch'] / ours['seconds_per_epoch']:.2f}x, "
          f"memory ratio {ours['peak_rss_mb'] / base['peak_rss_mb']:.2f}; vs TRL defaults: "
          f"{defaults['seconds_per_epoch'] / ours['seconds_per_epoch']:.2f}x, "
          f"memory ratio {ours['peak_rss_mb'] / defaults['peak_rss_mb']:.2f}")
    if "lora" in results:
        lora = results["lora"]
        print(f"  LoRA vs full fine-tuning (ours): {ours['seconds_per_epoch'] / lora['seconds_per_epoch']:.2f}x "
              f"per epoch, memory ratio {lora['peak_rss_mb'] / ours['peak_rss_mb']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
