"""PNG plots of a sweep: each loss's frontier over β with its checkpoint curves, and the reward histograms."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluation.plots import LOSS_COLORS, REFERENCE_COLOR, draw_ceiling, plt, save_figure


def frontier(groups: dict[tuple, dict[str, Any]], reference: dict[str, float], several_rates: bool, x_metric: str,
             xlabel: str, path: Path, x_is_kl: bool = True, budgets: Sequence[float] = (),
             ceiling: tuple[Sequence[Any], Sequence[Any]] | None = None, y_metric: str = "reward_mean",
             ylabel: str = "mean reward (positive-class logit)") -> None:
    """`y_metric` against `x_metric`: per loss, the final checkpoint of each beta with 95% error bars over seeds,
    joined in order of x, plus each training's checkpoint curve as a thin line (dashed: several rounds);
    `budgets` are drawn as dotted vertical lines, `ceiling` (optimum, best-of-n points) under everything."""
    from ..experiments.sweep import label

    fig, ax = plt.subplots(figsize=(9, 6))
    # the ceiling's points carry the reward and a classifier's probabilities, not a judge function's score
    value = {"reward_mean": "reward", "judge_p_positive_mean": "judge_p_positive",
             "p_positive_mean": "p_positive"}.get(y_metric)
    if ceiling is not None and value is not None:
        draw_ceiling(ax, *ceiling, value=value)
    by_curve: dict[tuple, list[tuple[float, dict[str, Any]]]] = {}
    for (loss, rounds, lr, beta), group in groups.items():
        by_curve.setdefault((loss, rounds, lr), []).append((beta, group))
    ax.scatter([0.0 if x_is_kl else reference[x_metric]], [reference[y_metric]], color=REFERENCE_COLOR,
               marker="*", s=180, zorder=5, label="reference (start)")
    for index, (key, members) in enumerate(sorted(by_curve.items())):
        color = LOSS_COLORS[index % len(LOSS_COLORS)]
        style = "-" if key[1] == 1 else "--"
        points = []
        for beta, group in members:
            xs = [p[x_metric][0] for p in group["curve"]]
            ax.plot(xs, [p[y_metric][0] for p in group["curve"]], color=color, linestyle=style, linewidth=0.8,
                    alpha=0.45)
            x, x_err = group["final"][x_metric]
            y, y_err = group["final"][y_metric]
            points.append((x, y))
            # light error bars: with few seeds the t-intervals are wide and would hide the curves
            ax.errorbar(x, y, xerr=None if x_err != x_err else x_err, yerr=None if y_err != y_err else y_err,
                        color=color, marker="o", markersize=7, capsize=2, linestyle="none", elinewidth=0.8,
                        alpha=0.8)
            ax.annotate(f"β={beta:g}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7, color=color)
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], color=color, linestyle=style, linewidth=2,
                label=label(*key, several_rates))
    for budget in budgets:
        ax.axvline(budget, color="black", linestyle=":", linewidth=0.8, alpha=0.6)
    if x_is_kl:
        ax.set_xscale("symlog", linthresh=1.0)  # the ceiling lives within a few nats, trainings reach tens
        ax.set_xlim(left=0.0)  # KL is never negative (an interval over two seeds can reach below 0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(ylabel.split(" (")[0] + " vs " + ("KL to the reference" if x_is_kl else x_metric.replace("_", "-")))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def reward_histograms_per_loss(samples: dict[str, dict[float, list[float]]], reference: Sequence[float],
                               path: Path) -> None:
    """One panel per loss: the reference's reward histogram and each beta's final samples (seeds pooled)."""
    names = sorted(samples)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), sharey=True, squeeze=False)
    everything = list(reference) + [r for per_beta in samples.values() for rs in per_beta.values() for r in rs]
    low, high = min(everything), max(everything)
    bins = [low + (high - low) * i / 30 for i in range(31)]
    for ax, name in zip(axes[0], names):
        ax.hist(reference, bins=bins, color=REFERENCE_COLOR, alpha=0.45, label="reference")
        for index, beta in enumerate(sorted(samples[name])):
            values = samples[name][beta]
            ax.hist(values, bins=bins, histtype="step", linewidth=1.6, color=LOSS_COLORS[index % len(LOSS_COLORS)],
                    label=f"β={beta:g}, mean {sum(values) / len(values):.2f}")
        ax.set_title(name)
        ax.set_xlabel("reward")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("samples (seeds pooled)")
    save_figure(fig, path)
