#!/usr/bin/env python3
"""Generation and training throughput with 1 process vs N processes (torchrun, gloo on CPU; NCCL on GPUs).

Runs the real scripts as a user would, in a scratch run directory, and times them end to end (model
loading included). With N processes every process gets 1 thread per core it owns; on a 2-core machine
expect little gain: the point of multi-process runs here is correctness, the gain comes on GPUs.

    python3 benchmarks/bench_processes.py --processes 2
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


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--num-samples", type=int, default=512)
    parser.add_argument("--num-pairs", type=int, default=512)
    args = parser.parse_args(argv)

    env = os.environ | {"TQDM_DISABLE": "1"}
    scratch = Path(tempfile.mkdtemp(prefix="bench_processes."))
    try:
        results = {}
        for n in (1, args.processes):
            run_dir = scratch / f"n{n}"
            threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
            gen = timed([*launcher(n), "text_generation.py", "--run-dir", str(run_dir), "--num-samples",
                         str(args.num_samples)], env | threads)
            subprocess.run([sys.executable, "prepare_dataset.py", "--run-dir", str(run_dir), "--num-pairs",
                            str(args.num_pairs)], cwd=ROOT, env=env, check=True, capture_output=True)
            train = timed([*launcher(n), "main.py", "sigmoid", "--run-dir", str(run_dir), "--epochs", "1"],
                          env | threads)
            results[n] = (gen, train)
        identical = (scratch / "n1" / "data" / "generations.jsonl").read_bytes() == (
            scratch / f"n{args.processes}" / "data" / "generations.jsonl").read_bytes()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"embedded default, {os.cpu_count()} cores; wall time of each script, model loading included")
    for n, (gen, train) in results.items():
        print(f"  {n} process(es): text_generation {args.num_samples} samples {gen:6.1f} s "
              f"({args.num_samples / gen:5.1f} samples/s); main.py sigmoid 1 epoch of {args.num_pairs} pairs "
              f"{train:6.1f} s ({args.num_pairs / train:5.1f} pairs/s)")
    (g1, t1), (gn, tn) = results[1], results[args.processes]
    print(f"  speed-up with {args.processes}: generation {g1 / gn:.2f}x, training {t1 / tn:.2f}x; "
          f"generations identical: {identical}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
