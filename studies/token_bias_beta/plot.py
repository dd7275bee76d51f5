#!/usr/bin/env python3
"""p_positive against KL of each given pipeline run's policies, with their 95% intervals over prompts, one colour
per β and one marker per seed, and the issue's target box (p_positive >= 0.80 at KL <= 5 nats).

    python3 studies/token_bias_beta/plot.py RUN_DIR ... --out beta_seeds.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "standard_vs_token_bias"))
from table import rows_of  # noqa: E402

MARKERS = "osD^v"
TARGET_P, TARGET_KL = 0.80, 5.0


def plot(rows: list[dict], out: Path) -> None:
    betas = sorted({row["beta"] for row in rows})
    seeds = sorted({row["seed"] for row in rows})
    colours = plt.get_cmap("viridis")([i / max(len(betas) - 1, 1) for i in range(len(betas))])
    figure, axes = plt.subplots(figsize=(7, 5))
    for row in rows:
        colour = colours[betas.index(row["beta"])]
        kl_low, kl_high = row["kl_ci"] or (row["kl"], row["kl"])
        p_low, p_high = row["p_positive_ci"] or (row["p_positive"], row["p_positive"])
        axes.errorbar(row["kl"], row["p_positive"], xerr=[[row["kl"] - kl_low], [kl_high - row["kl"]]],
                      yerr=[[row["p_positive"] - p_low], [p_high - row["p_positive"]]], color=colour,
                      marker=MARKERS[seeds.index(row["seed"]) % len(MARKERS)], capsize=2, alpha=0.8, linestyle="none")
    axes.axhline(TARGET_P, color="grey", linestyle="--", linewidth=1)
    axes.axvline(TARGET_KL, color="grey", linestyle="--", linewidth=1)
    (left, right), (bottom, top) = axes.get_xlim(), axes.get_ylim()
    axes.fill_between([left, TARGET_KL], TARGET_P, top, color="green", alpha=0.07,
                      label=f"target: p_positive ≥ {TARGET_P:g}, KL ≤ {TARGET_KL:g} nats")
    axes.set_xlim(left, right)
    axes.set_ylim(bottom, top)
    for beta, colour in zip(betas, colours):
        axes.plot([], [], color=colour, marker="o", linestyle="none", label=f"β {beta:g}")
    for seed in seeds:
        axes.plot([], [], color="black", marker=MARKERS[seeds.index(seed) % len(MARKERS)], linestyle="none",
                  label=f"seed {seed}")
    axes.set_xlabel("KL to the starting policy (nats), 95% interval over prompts")
    axes.set_ylabel("p_positive of held-out samples, 95% interval")
    axes.set_title("token-bias sigmoid: β against seeds")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    plot([row for run_dir in args.run_dirs for row in rows_of(run_dir)], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
