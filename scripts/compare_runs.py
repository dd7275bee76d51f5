#!/usr/bin/env python3
"""Whether two pipeline run directories wrote the same table: each `results/*/metrics.json` byte for byte (a
`--bitwise` run against another), or with `--within-intervals` each policy's p_positive and KL inside the reference
run's 95% intervals (a run on the CPU's own kernels, whose last digits depend on the machine). Where not, the first
numbers that differ. Exit 0 when every method agrees, 1 when one differs or is missing.

    python3 scripts/compare_runs.py REFERENCE_RUN_DIR RUN_DIR [--within-intervals]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SHOWN = 5  # differing values printed per file


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def differences(reference: Path, run: Path) -> list[str]:
    """Lines naming what differs between two metrics.json files (none: byte for byte the same)."""
    reference_bytes, run_bytes = reference.read_bytes(), run.read_bytes()
    if reference_bytes == run_bytes:
        return []
    ours = dict(leaves(json.loads(run_bytes)))
    theirs = dict(leaves(json.loads(reference_bytes)))
    keys = list(theirs) + [key for key in ours if key not in theirs]  # the file's own order: the headline first
    changed = [f"{key}: {theirs.get(key)!r} -> {ours.get(key)!r}" for key in keys if theirs.get(key) != ours.get(key)]
    return changed or ["the same values, other bytes (formatting)"]


# (what, the policy's point in metrics.json, its 95% interval in metrics.json's `intervals`)
INTERVAL_CHECKS = (("p_positive", ("policy", "p_positive_mean"), "p_positive_mean_ci95"), ("KL", ("kl",), "kl_ci95"))


def outside_intervals(reference: Path, run: Path) -> list[str]:
    """Lines naming each of the run's points outside the reference run's 95% interval (none: all inside)."""
    theirs, ours = json.loads(reference.read_text()), json.loads(run.read_text())
    out = []
    for what, path, interval in INTERVAL_CHECKS:
        value = ours
        for key in path:
            value = value[key]
        low, high = theirs["intervals"][interval]
        if not low <= value <= high:
            out.append(f"{what} {value:.4f} outside the reference's 95% interval [{low:.4f}, {high:.4f}]")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("--within-intervals", action="store_true",
                        help="each policy's p_positive and KL inside the reference's 95%% intervals, not byte for byte")
    args = parser.parse_args(argv)
    files = sorted(path.relative_to(args.reference) for path in args.reference.glob("results/*/metrics.json"))
    if not files:
        print(f"error: {args.reference} has no results/*/metrics.json; pass a pipeline run directory", file=sys.stderr)
        return 2
    same = True
    for name in files:
        if not (args.run / name).exists():
            print(f"{name}: missing from {args.run}")
            same = False
            continue
        if args.within_intervals:
            changed = outside_intervals(args.reference / name, args.run / name)
            print(f"{name}: " + ("inside the reference's intervals" if not changed else "outside"))
        else:
            changed = differences(args.reference / name, args.run / name)
            print(f"{name}: " + ("identical" if not changed else f"{len(changed)} values differ"))
        for line in changed[:SHOWN]:
            print(f"  {line}")
        same = same and not changed
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
