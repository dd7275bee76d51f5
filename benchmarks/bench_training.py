#!/usr/bin/env python3
"""DPO training time per epoch and peak memory: TRL's default DPOTrainer setup vs the project's.

Baseline: `DPOConfig` defaults (gradient checkpointing on, reference log-probs recomputed every step by a
separate reference model; bf16 off, since it fails on CPU). Ours: `sentiment_dpo.training.dpo_config`
(reference log-probs precomputed once, no activation checkpointing). Same model, pairs, seed, learning
rate and batch size; each side runs in its own process so that peak memory is its own. Only ratios are
comparable across machines.

    python3 benchmarks/bench_training.py --pairs runs/default/data/pairs.jsonl --num-pairs 256
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_side(side: str, pairs_path: Path, num_pairs: int, policy_spec: str, batch_size: int,
             learning_rate: float) -> dict:
    import torch

    from sentiment_dpo.config import TrainingConfig
    from sentiment_dpo.models import load_policy
    from sentiment_dpo.training import dpo_config, pairs_dataset, read_pairs

    device = torch.device("cpu")
    policy = load_policy(policy_spec, device)
    dataset = pairs_dataset(read_pairs(pairs_path)[:num_pairs], policy.tokenizer)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        from trl import DPOConfig, DPOTrainer

        if side == "baseline":
            args = DPOConfig(output_dir=out, bf16=False, use_cpu=True, per_device_train_batch_size=batch_size,
                             learning_rate=learning_rate, num_train_epochs=1, report_to="none", save_strategy="no",
                             seed=0, disable_tqdm=True)
            reference = load_policy(policy_spec, device).model
            trainer = DPOTrainer(model=policy.model, ref_model=reference, args=args, train_dataset=dataset,
                                 processing_class=policy.tokenizer)
        else:
            config = TrainingConfig(batch_size=batch_size, learning_rate=learning_rate, epochs=1, warmup_ratio=0.0)
            args = dpo_config(config, Path(out), use_cpu=True)
            args.disable_tqdm = True
            trainer = DPOTrainer(model=policy.model, args=args, train_dataset=dataset,
                                 processing_class=policy.tokenizer)
        result = trainer.train()
        seconds = time.perf_counter() - start
    return {"side": side, "seconds": seconds, "train_loss": result.training_loss,
            "steps": trainer.state.global_step,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="runs/default/data/pairs.jsonl",
                        help="a pairs.jsonl from prepare_dataset.py")
    parser.add_argument("--num-pairs", type=int, default=256)
    parser.add_argument("--policy", default="embedded")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--side", choices=["baseline", "ours"], help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    if not Path(args.pairs).exists():
        print(f"error: {args.pairs} not found; run `python3 run_pipeline.py` first or pass --pairs", file=sys.stderr)
        return 2
    if args.side:
        print(json.dumps(run_side(args.side, Path(args.pairs), args.num_pairs, args.policy, args.batch_size,
                                  args.learning_rate)))
        return 0
    results = {}
    for side in ("baseline", "ours"):
        cmd = [sys.executable, __file__, "--side", side, "--pairs", args.pairs, "--num-pairs", str(args.num_pairs),
               "--policy", args.policy, "--batch-size", str(args.batch_size), "--learning-rate",
               str(args.learning_rate)]
        output = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[side] = json.loads(output.strip().splitlines()[-1])
    base, ours = results["baseline"], results["ours"]
    print(f"DPO training, one epoch of {args.num_pairs} pairs at batch {args.batch_size}, policy {args.policy}")
    for name, r in (("baseline (TRL defaults, separate ref model)", base), ("ours (precomputed ref, no ckpt)", ours)):
        print(f"  {name:44} {r['seconds']:7.1f} s  loss {r['train_loss']:.4f}  peak RSS {r['peak_rss_mb']:7.0f} MB")
    print(f"  speed-up per epoch: {base['seconds'] / ours['seconds']:.2f}x; "
          f"memory ratio ours/baseline: {ours['peak_rss_mb'] / base['peak_rss_mb']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
