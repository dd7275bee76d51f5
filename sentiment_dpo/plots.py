"""PNG plots of the before/after comparison (matplotlib, headless)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

REFERENCE_COLOR = "#7f7f7f"
POLICY_COLOR = "#d62728"


def _save(fig, path: Path) -> None:
    """Render to a temporary file, then rename, like every other artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def reward_histogram(reference: Sequence[float], policy: Sequence[float], loss: str, path: Path,
                     xlabel: str = "reward (positive-class logit)") -> None:
    """Overlaid histograms of reference and policy rewards, with their means marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    low, high = min(min(reference), min(policy)), max(max(reference), max(policy))
    bins = [low + (high - low) * i / 30 for i in range(31)]
    for values, name, color in ((reference, "reference (before)", REFERENCE_COLOR),
                                (policy, f"{loss} policy (after)", POLICY_COLOR)):
        m = sum(values) / len(values)
        ax.hist(values, bins=bins, alpha=0.55, color=color, label=f"{name}, mean {m:.2f}")
        ax.axvline(m, color=color, linestyle="--", linewidth=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.set_title(f"Reward on held-out prompts: reference vs {loss}")
    ax.legend()
    _save(fig, path)


def diversity_bars(reference: dict[str, float], policy: dict[str, float], loss: str, path: Path) -> None:
    """Distinct-1/2/3 side by side, and word entropy on its own axis (different units)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    keys = ["distinct_1", "distinct_2", "distinct_3"]
    width = 0.38
    for offset, (block, name, color) in enumerate(((reference, "reference", REFERENCE_COLOR),
                                                   (policy, loss, POLICY_COLOR))):
        xs = [i + (offset - 0.5) * width for i in range(len(keys))]
        bars = left.bar(xs, [block[k] for k in keys], width, color=color, label=name)
        left.bar_label(bars, fmt="%.2f", fontsize=8)
        right.bar([offset], [block["token_entropy"]], 0.7, color=color)
    left.set_xticks(range(len(keys)), ["distinct-1", "distinct-2", "distinct-3"])
    left.set_ylim(0, 1.1)
    left.set_ylabel("unique / total n-grams")
    left.legend(loc="lower right")
    right.set_xticks([0, 1], ["reference", loss])
    right.set_ylabel("word entropy (bits)")
    fig.suptitle(f"Diversity of samples: reference vs {loss}")
    _save(fig, path)


def training_curves(log_history: list[dict[str, Any]], loss: str, path: Path) -> bool:
    """Training loss and implicit-reward accuracy per logged step; False if the log has no such entries."""
    steps = [e["step"] for e in log_history if "loss" in e and "step" in e]
    if not steps:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(steps, [e["loss"] for e in log_history if "loss" in e and "step" in e], color=POLICY_COLOR)
    left.set_xlabel("step")
    left.set_ylabel(f"{loss} loss")
    accuracy = [(e["step"], e["rewards/accuracies"]) for e in log_history if "rewards/accuracies" in e]
    if accuracy:
        right.plot(*zip(*accuracy), color=POLICY_COLOR)
        right.set_ylim(0, 1.05)
    right.set_xlabel("step")
    right.set_ylabel("implicit-reward accuracy (train batch)")
    fig.suptitle(f"Training: {loss}")
    _save(fig, path)
    return True
