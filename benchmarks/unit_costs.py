#!/usr/bin/env python3
"""Measure the per-unit costs the up-front estimate uses (`sentiment_dpo/run_estimate.py`) for one preset, on this
machine, and write them into `sentiment_dpo/unit_costs.json`.

Small pipelines of the preset's models, each from an empty run cache (the models' own folders and the corpus
copied from `--cache`), whose stage timings and peak memory (timings.json) differ by known amounts of work:

    A: 128 samples (16 prompts x 8), their 448 pairs, one epoch (1 step of 128 texts); stage 4 on 32 held-out
       prompts with 8 ceiling samples each (256)
    B: 256 samples, 896 pairs (2 steps); 64 held-out prompts, 8 ceiling samples each (512)
    C: as A, 16 ceiling samples each (512)
    then, on A's pairs, one training step at batch 112 (32 texts) and one with LoRA rank 16 (128 texts).

Per unit: stage 1 per sample = (B - A) / 128; a text's forward pass f from training's B - A = one more step
(128 texts, forward + backward = 3f each) and 128 more texts in the reference pass (f each); the ceiling per
sample = (C - A) / 256; stage 4 per held-out prompt = (B - A - 256 ceiling samples) / 32; the rest of each stage
is fixed (loading, saving). Memory: the training peak at 128 and 32 texts per step gives a base and a per-text
slope. The reference preset needs its stand-ins in a hub cache (scripts/rehearse_reference.py):

    HF_HUB_OFFLINE=1 HF_HUB_CACHE=rehearsal/hub python3 benchmarks/unit_costs.py --preset reference \\
        --prompts rehearsal/imdb --cache ~/.cache/sentiment_dpo --work /tmp/unit_costs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEEP = ("pang_lee", "judge-minilm-", "reward-minilm-", "all-minilm-", "smollm2-")  # models and corpus, no results


def fresh_cache(source: Path, target: Path) -> Path:
    """A user cache holding `source`'s models and corpus and none of its results (rows, ceilings, log-probs)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name.startswith(KEEP):
            shutil.copytree(entry, target / entry.name, symlinks=True)
    return target


def run(args: list[str], cache: Path) -> None:
    env = os.environ | {"SENTIMENT_DPO_CACHE": str(cache)}
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def pipeline(work: Path, name: str, common: list[str], cache_source: Path, samples: int, prompts: int,
             ceiling: int) -> dict:
    run_dir = work / name
    config = work / f"{name}.yaml"
    config.write_text(json.dumps({
        "losses": ["sigmoid"], "generation": {"num_samples": samples, "samples_per_prompt": 8},
        "pairs": {"num_pairs": 0}, "training": {"epochs": 1.0},
        "metrics": {"num_prompts": prompts, "ceiling_samples": ceiling}}))
    run(["run_pipeline.py", "--config", str(config), "--run-dir", str(run_dir), *common],
        fresh_cache(cache_source, work / f"cache_{name}"))
    return json.loads((run_dir / "timings.json").read_text())


def training_step(work: Path, source_run: Path, name: str, cache_source: Path, *options: str) -> dict:
    """One training step on `source_run`'s pairs (its stage 1 and 2 files), timed by a one-loss pipeline-free run."""
    run_dir = work / name
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    for file in (source_run / "data").iterdir():
        shutil.copy(file, run_dir / "data" / file.name)
    cache = fresh_cache(cache_source, work / f"cache_{name}")
    code = ("import json, sys, time; from sentiment_dpo import commands; from sentiment_dpo.peak_memory import "
            "peak_memory; t = time.time()\nwith peak_memory() as p: code = commands.train(sys.argv[1:])\n"
            "print(json.dumps({'seconds': time.time() - t, 'gib': p.gigabytes}))")
    env = os.environ | {"SENTIMENT_DPO_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code, "sigmoid", "--run-dir", str(run_dir), "--max-steps", "1",
                          *options], cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--prompts", help="--prompts for the runs (the reference preset: the stand-ins' folder)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sentiment_dpo",
                        help="a user cache holding the preset's models (their folders are copied)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/unit_costs"))
    parser.add_argument("--write", action="store_true", help="store the figures in sentiment_dpo/unit_costs.json")
    args = parser.parse_args(argv)
    from sentiment_dpo.run_estimate import UNIT_COSTS_FILE, machine_speed, measured_entry

    common = ["--preset", args.preset, *(["--prompts", args.prompts] if args.prompts else [])]
    args.work.mkdir(parents=True, exist_ok=True)
    a = pipeline(args.work, "A", common, args.cache, 128, 32, 8)
    b = pipeline(args.work, "B", common, args.cache, 256, 64, 8)
    c = pipeline(args.work, "C", common, args.cache, 128, 32, 16)
    small = training_step(args.work, args.work / "A", "batch112", args.cache, "--batch-size", "112")
    lora = training_step(args.work, args.work / "A", "lora", args.cache, "--lora-rank", "16")
    from sentiment_dpo.presets import PRESETS

    entry = measured_entry(PRESETS[args.preset]["policy"], a, b, c, small, lora, machine_speed())
    print(json.dumps(entry, indent=2))
    if args.write:
        table = json.loads(UNIT_COSTS_FILE.read_text()) if UNIT_COSTS_FILE.exists() else {}
        table[args.preset] = entry
        UNIT_COSTS_FILE.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
