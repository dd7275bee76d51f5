#!/usr/bin/env python3
"""What byte identity costs: stage 1 and a DPO training on the CPU's own kernels (the default) against `--bitwise`
(the AVX2 kernels and the vendor-neutral products, sentiment_dpo/kernels.py), side by side, alternating so that a
busy moment of the machine falls on both.

Runs the real scripts as a user would and times them end to end (model loading included), with a cache of their
own (the corpus linked in from the user cache), so that no cached rows or reference log-probs are served; each
repeat samples with its own seed. Only ratios are comparable across machines.

    python3 benchmarks/bench_bitwise.py --num-samples 1024 --max-steps 30 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"default": [], "bitwise": ["--bitwise"]}


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=1024)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    from sentiment_dpo.embedded.corpus import CORPUS_FOLDER, cache_dir, load_corpus

    load_corpus()  # fetched once into the user cache, then shared
    scratch = Path(tempfile.mkdtemp(prefix="bench_bitwise."))
    (scratch / "cache").mkdir()
    (scratch / "cache" / CORPUS_FOLDER).symlink_to(cache_dir() / CORPUS_FOLDER)
    env = os.environ | {"TQDM_DISABLE": "1", "SENTIMENT_DPO_CACHE": str(scratch / "cache")}
    times: dict[str, dict[str, list[float]]] = {name: {"generation": [], "training": []} for name in SETTINGS}
    try:
        for repeat in range(args.repeats):
            for name, flags in SETTINGS.items():
                run_dir = scratch / name
                shutil.rmtree(run_dir, ignore_errors=True)
                times[name]["generation"].append(timed(
                    [sys.executable, "text_generation.py", "--run-dir", str(run_dir), "--num-samples",
                     str(args.num_samples), "--seed", str(repeat), *flags], env))
                subprocess.run([sys.executable, "prepare_dataset.py", "--run-dir", str(run_dir)], cwd=ROOT, env=env,
                               check=True, capture_output=True)
                times[name]["training"].append(timed(
                    [sys.executable, "main.py", "sigmoid", "--run-dir", str(run_dir), "--max-steps",
                     str(args.max_steps), *flags], env))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"embedded default, {os.cpu_count()} cores, {args.repeats} alternating repeats; wall time of each script, "
          f"model loading included (min over repeats)")
    best = {name: {stage: min(values) for stage, values in stages.items()} for name, stages in times.items()}
    for name, stages in best.items():
        print(f"  {name:>8}: text_generation {args.num_samples} samples {stages['generation']:6.1f} s; "
              f"main.py sigmoid {args.max_steps} steps {stages['training']:6.1f} s")
    own, bitwise = best["default"], best["bitwise"]
    print(f"  default / bitwise: generation {own['generation'] / bitwise['generation']:.2f}x, "
          f"training {own['training'] / bitwise['training']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
