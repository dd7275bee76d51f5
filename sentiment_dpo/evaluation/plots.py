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


def save_figure(fig, path: Path) -> None:
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
    ax.set_title(f"{xlabel.split(' (')[0].capitalize()} on held-out prompts: reference vs {loss}")
    ax.legend()
    save_figure(fig, path)


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
    save_figure(fig, path)


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
    save_figure(fig, path)
    return True


LOSS_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
CEILING_COLOR = "black"
BEST_OF_N_COLOR = "#bcbd22"


def draw_ceiling(ax, optimum: Sequence[Any], best_of_n: Sequence[Any], value: str = "reward") -> None:
    """The KL-regularised optimum (solid where trusted, dotted beyond) and best-of-n (markers at n = 2, 4, ...,
    at its KL upper bound) against KL; points are `ceiling.CeilingPoint`s, `value` the field drawn on y."""
    trusted = [p for p in optimum if p.trusted]
    beyond = [p for p in optimum if not p.trusted]
    ax.plot([p.kl for p in trusted], [getattr(p, value) for p in trusted], color=CEILING_COLOR, linewidth=2.2,
            label="ceiling: KL-regularised optimum")
    if value == "reward":
        ax.fill_between([p.kl for p in trusted], [p.reward_interval[0] for p in trusted],
                        [p.reward_interval[1] for p in trusted], color=CEILING_COLOR, alpha=0.08, linewidth=0)
    if beyond:
        tail = trusted[-1:] + beyond
        ax.plot([p.kl for p in tail], [getattr(p, value) for p in tail], color=CEILING_COLOR, linewidth=1.2,
                linestyle=":", label="optimum, past the trusted range (KL > ½·log N)")
    marked = [i for i, p in enumerate(best_of_n) if (n := int(p.label.split("=")[1])) & (n - 1) == 0]
    ax.plot([p.kl for p in best_of_n], [getattr(p, value) for p in best_of_n], color=BEST_OF_N_COLOR, marker="s",
            markersize=4, markevery=marked, linewidth=1.2, label="best-of-n of the reference (KL: upper bound)")
    for i in marked[1:]:
        p = best_of_n[i]
        ax.annotate(p.label, (p.kl, getattr(p, value)), textcoords="offset points", xytext=(4, -10), fontsize=7,
                    color=BEST_OF_N_COLOR)


def ceiling_frontier(methods: dict[str, tuple[float, float]], reference_reward: float, optimum: Sequence[Any],
                     best_of_n: Sequence[Any], path: Path) -> None:
    """Mean reward vs KL of each trained policy (name -> (KL, reward)) against the ceiling and best-of-n."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    draw_ceiling(ax, optimum, best_of_n)
    ax.scatter([0.0], [reference_reward], color=REFERENCE_COLOR, marker="*", s=180, zorder=5, label="reference")
    for index, (name, (kl, reward)) in enumerate(methods.items()):
        ax.scatter([kl], [reward], color=LOSS_COLORS[index % len(LOSS_COLORS)], s=70, zorder=5, label=name)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("KL(policy ‖ reference), nats (symlog scale)")
    ax.set_ylabel("mean reward (positive-class logit)")
    ax.set_title("Trained policies against the ceiling (held-out prompts)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
