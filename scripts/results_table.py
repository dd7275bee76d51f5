#!/usr/bin/env python3
"""The results table of README.md: each (recipe, method, β) of the given pipeline run directories, means over the
runs (seeds) with their range (min to max), and a copy of each run's metrics and summary for the repository.

    python3 scripts/results_table.py runs/standard_seed0 runs/tokenbias_seed0 ... [--by-seed]
        [--copy-to DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import yaml


def rows_of(run_dir: Path) -> list[dict]:
    """One row per trained method of a pipeline run directory."""
    out = []
    for metrics_file in sorted(run_dir.glob("results/*/metrics.json")):
        if metrics_file.parent.name == "reference":
            continue
        metrics = json.loads(metrics_file.read_text())
        record = run_dir / "models" / metrics["loss"] / "training.config.yaml"
        if not record.exists():  # the recipe, β and seed are read from it
            print(f"error: {record} is missing; pass the full run directory, or a copy made with --copy-to",
                  file=sys.stderr)
            raise SystemExit(2)
        training = yaml.safe_load(record.read_text())
        intervals = metrics.get("intervals") or {}
        out.append({"recipe": training["recipe"], "loss": metrics["loss"], "beta": training["beta"],
                    "seed": training["seed"],
                    "p_positive": metrics["policy"]["p_positive_mean"],
                    "reference_p_positive": metrics["reference"]["p_positive_mean"],
                    "judge": metrics["policy"].get("judge_p_positive_mean"),
                    "kl": metrics["kl"], "overhead": metrics.get("kl_overhead"),
                    "overhead_ci": intervals.get("kl_overhead_ci95"),
                    "p_positive_ci": intervals.get("p_positive_mean_ci95"), "kl_ci": intervals.get("kl_ci95"),
                    "distinct_2_change": metrics["policy"]["distinct_2"] / metrics["reference"]["distinct_2"] - 1})
    return out


def _cell(values: list[float | None], spec: str, unit: str = "") -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "–"
    mean = sum(known) / len(known)
    spread = f" ({min(known):{spec}} to {max(known):{spec}})" if len(known) > 1 else ""
    return f"{mean:{spec}}{unit}{spread}"


def table(rows: list[dict], by_seed: bool = False) -> str:
    """One line per (recipe, method, β), or per (recipe, method, β, seed) with `by_seed`."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["recipe"], row["loss"], row["beta"], row["seed"] if by_seed else 0)].append(row)
    lines = ["| recipe | method | β | seeds | p_positive (start → end) | judge p_positive | KL (nats) | KL overhead | "
             "distinct-2 change |", "|---|---|---|---|---|---|---|---|---|"]
    order = sorted(groups.items(), key=lambda item: (item[0][0] != "standard", item[0][1], -item[0][2], item[0][3]))
    for (recipe, loss, beta, _), members in order:
        start = _cell([m["reference_p_positive"] for m in members], ".3f")
        lines.append(
            f"| {recipe} | `{loss}` | {beta:g} | {', '.join(str(m['seed']) for m in members)} | {start} → "
            f"{_cell([m['p_positive'] for m in members], '.3f')} | {_cell([m['judge'] for m in members], '.3f')} | "
            f"{_cell([m['kl'] for m in members], '.2f')} | {_cell([m['overhead'] for m in members], '.1f', '×')} | "
            f"{_cell([100 * m['distinct_2_change'] for m in members], '+.1f', '%')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--by-seed", action="store_true", help="one line per seed instead of their mean and range")
    parser.add_argument("--copy-to", type=Path, help="copy each run's SUMMARY.md, timings, metrics.json files, "
                                                     "plots and training records here (one folder per run)")
    args = parser.parse_args(argv)
    rows = [row for run_dir in args.run_dirs for row in rows_of(run_dir)]
    print(table(rows, args.by_seed))
    if args.copy_to:
        for run_dir in args.run_dirs:
            target = args.copy_to / run_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for name in ("SUMMARY.md", "frontier.png", "timings.json"):
                if (run_dir / name).exists():
                    shutil.copy(run_dir / name, target / name)
            for result in run_dir.glob("results/*/"):  # what SUMMARY.md shows and links
                for file in [result / "metrics.json", *result.glob("*.png")]:
                    if file.exists():
                        (target / "results" / result.name).mkdir(parents=True, exist_ok=True)
                        shutil.copy(file, target / "results" / result.name / file.name)
            for record in run_dir.glob("models/*/training.config.yaml"):  # so the copy can be tabled again
                (target / "models" / record.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(record, target / "models" / record.parent.name / record.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
