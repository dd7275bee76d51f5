"""The sweep's report: per-setting means with 95% confidence intervals over seeds, the reward-KL frontier, diversity
against reward, reward histograms, and the comparison of the losses at a KL budget.

`aggregate` and `best_under_budget` are pure (cells in, numbers out); `write_report` reads the cells and writes
report.md with its plots next to it.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import io
from .errors import PipelineError
from .stats import mean_ci95

logger = logging.getLogger(__name__)

REPORT = "report.md"
TABLE_METRICS = (("reward_mean", "reward", 2), ("p_positive_mean", "p_positive", 3), ("kl", "KL (nats)", 1),
                 ("win_rate", "win rate", 2), ("distinct_1", "distinct-1", 3), ("distinct_2", "distinct-2", 3),
                 ("token_entropy", "entropy (bits)", 2), ("self_bleu", "self-BLEU", 3),
                 ("reference_perplexity", "ppl under ref", 1))


def setting_key(settings: dict[str, Any]) -> tuple[str, int, float, float]:
    """Which curve a cell belongs to: (loss, rounds, learning rate); beta varies along the curve."""
    return settings["loss"], settings["rounds"], settings["learning_rate"], settings["beta"]


def label(loss: str, rounds: int, learning_rate: float, several_rates: bool) -> str:
    text = loss + (f", lr {learning_rate:g}" if several_rates else "")
    return text + (f", {rounds} rounds" if rounds > 1 else "")


def aggregate(cells: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Per (loss, rounds, lr, beta): the seeds, mean ± CI of every final metric, and the mean curve over seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        groups[setting_key(cell["settings"])].append(cell)
    out = {}
    for key, members in sorted(groups.items()):
        final = {name: mean_ci95([m["final"][name] for m in members]) for name, _, _ in TABLE_METRICS}
        steps: dict[int, list[dict[str, float]]] = defaultdict(list)
        for member in members:
            for point in member["curve"]:
                steps[point["step"]].append(point)
        curve = [{"step": step, **{name: mean_ci95([p[name] for p in points]) for name, _, _ in TABLE_METRICS},
                  "seeds": len(points)} for step, points in sorted(steps.items())]
        out[key] = {"seeds": sorted(m["settings"]["seed"] for m in members), "final": final, "curve": curve}
    return out


def best_under_budget(groups: dict[tuple, dict[str, Any]], budget: float) -> dict[tuple, dict[str, Any]]:
    """Per (loss, rounds, lr): the trained checkpoint (any beta, any step after 0) with the highest seed-mean
    reward among those whose seed-mean KL is within `budget`, with its reward and KL (mean, CI half-width).
    A setting none of whose checkpoints is within the budget is left out (step 0 is the reference itself)."""
    best: dict[tuple, dict[str, Any]] = {}
    for (loss, rounds, lr, beta), group in groups.items():
        for point in group["curve"]:
            if point["step"] == 0 or point["kl"][0] > budget:
                continue
            current = best.get((loss, rounds, lr))
            if current is None or point["reward_mean"][0] > current["reward"][0]:
                best[(loss, rounds, lr)] = {"beta": beta, "step": point["step"], "reward": point["reward_mean"],
                                            "kl": point["kl"], "p_positive": point["p_positive_mean"],
                                            "seeds": point["seeds"]}
    return best


def _fmt(value: tuple[float, float], digits: int) -> str:
    m, half = value
    return f"{m:.{digits}f}" if math.isnan(half) else f"{m:.{digits}f} ± {half:.{digits}f}"


def _separated(higher: dict[str, Any], lower: dict[str, Any]) -> bool:
    """Whether the two rewards' 95% intervals do not overlap (False when either has no interval)."""
    low, high = higher["reward"][0] - higher["reward"][1], lower["reward"][0] + lower["reward"][1]
    return not (math.isnan(low) or math.isnan(high)) and low > high


def finding(best: dict[tuple, dict[str, Any]], budget: float, several_rates: bool,
            beyond: Sequence[tuple] = ()) -> str:
    """One paragraph naming the loss with the highest reward within the KL budget, whether its lead over the
    runner-up exceeds the seed spread (95% CIs that do not overlap), which losses fall below it by more, and
    which settings (`beyond`) have no trained checkpoint within the budget at all."""
    past = (f" Every checkpoint of {', '.join(label(*k, several_rates) for k in beyond)} is past this budget."
            if beyond else "")
    if not best:
        return f"No trained checkpoint stayed within the KL budget of {budget:g} nats." + past
    ranked = sorted(best.items(), key=lambda item: -item[1]["reward"][0])
    (key, top) = ranked[0]
    text = (f"Within a KL budget of {budget:g} nats, **{label(*key, several_rates)}** reaches the highest mean reward: "
            f"{_fmt(top['reward'], 2)} (β = {top['beta']:g}, step {top['step']}, KL {top['kl'][0]:.1f}, "
            f"{top['seeds']} seeds).")
    if len(ranked) > 1:
        key2, second = ranked[1]
        text += (f" Runner-up: {label(*key2, several_rates)} with {_fmt(second['reward'], 2)} "
                 f"(β = {second['beta']:g}, step {second['step']}, KL {second['kl'][0]:.1f}). The difference, "
                 f"{top['reward'][0] - second['reward'][0]:.2f}, is "
                 + ("larger than the seed spread (the 95% intervals do not overlap)." if _separated(top, second) else
                    "within the seed spread (the 95% intervals overlap), so this sweep does not separate them."))
    others = ", ".join(f"{label(*k, several_rates)} {_fmt(v['reward'], 2)}" for k, v in ranked[2:])
    if others:
        text += f" The others: {others}."
    below = [label(*k, several_rates) for k, v in ranked[1:] if _separated(top, v)]
    if below:
        text += f" Below the best by more than the seed spread: {', '.join(below)}."
    return text + past + (" (The best point is picked among many checkpoints, which favours noisy curves a little; "
                   "the intervals are over seeds at that one point.)")


def _load_cells(run_dir: Path) -> list[dict[str, Any]]:
    from .sweep import CELL_FILE, CELLS

    cells = []
    for file in sorted((run_dir / CELLS).glob(f"*/{CELL_FILE}")):
        cell = json.loads(file.read_text(encoding="utf-8"))
        cell["folder"] = file.parent
        cells.append(cell)
    return cells


def write_report(run_dir: Path, config) -> Path:
    from . import plots
    from .sweep import REFERENCE

    cells = _load_cells(run_dir)
    if not cells:
        raise PipelineError(f"{run_dir} holds no finished training yet; run `python3 sweep.py` first")
    reference = json.loads((run_dir / REFERENCE / "metrics.json").read_text())
    groups = aggregate(cells)
    several_rates = len({key[2] for key in groups}) > 1
    best = {budget: best_under_budget(groups, budget) for budget in config.kl_budgets}
    settings = list(dict.fromkeys(key[:3] for key in groups))  # (loss, rounds, lr), in the groups' order
    beyond = {budget: [key for key in settings if key not in per_setting] for budget, per_setting in best.items()}
    plots.frontier(groups, reference, several_rates, "kl", "KL(policy ‖ reference), nats (dotted: the KL budgets)",
                   run_dir / "frontier.png", budgets=config.kl_budgets)
    plots.frontier(groups, reference, several_rates, "distinct_2", "distinct-2 (higher = more diverse)",
                   run_dir / "diversity_vs_reward.png", x_is_kl=False)
    samples = defaultdict(dict)
    for cell in cells:
        key = setting_key(cell["settings"])
        rows = io.read_jsonl(cell["folder"] / "samples.jsonl", ("reward",), "python3 sweep.py")
        samples[label(key[0], key[1], key[2], several_rates)].setdefault(key[3], []).extend(r["reward"] for r in rows)
    reference_rewards = [r["reward"] for r in io.read_jsonl(run_dir / REFERENCE / "samples.jsonl", ("reward",),
                                                            "python3 sweep.py")]
    plots.reward_histograms_per_loss(samples, reference_rewards, run_dir / "reward_hists.png")

    lines = ["# Sweep report", "",
             f"Policy `{config.policy}`, reward `{config.reward}`; {config.num_pairs} pairs per round from "
             f"{config.num_samples} samples, {config.epochs:g} epochs at batch {config.batch_size}; every "
             f"{config.eval_every} steps each policy is evaluated on {config.eval_prompts} held-out prompts "
             f"(one pure sample each, {config.max_new_tokens} new tokens). {len(cells)} finished trainings, "
             f"{sum(c['seconds'] for c in cells) / 60:.0f} min of training and evaluation in total. "
             "Values are means over training seeds ± the half-width of the 95% t-interval.", "",
             "## Findings", "",
             *[f"- {finding(best[budget], budget, several_rates, beyond[budget])}" for budget in best], "",
             "## Reward–KL frontier", "",
             "Large markers: final checkpoints (one per β, error bars over seeds); thin lines: the checkpoints of "
             "each training (mean over seeds), starting at the reference (KL 0).", "",
             "![frontier](frontier.png)", "", "![diversity vs reward](diversity_vs_reward.png)", "",
             "![reward histograms](reward_hists.png)", ""]
    for budget, per_loss in best.items():
        lines += [f"## Best checkpoint within KL ≤ {budget:g} nats", "",
                  "| loss | β | step | reward | KL | p_positive | seeds |", "|---|---|---|---|---|---|---|"]
        for key, b in sorted(per_loss.items(), key=lambda item: -item[1]["reward"][0]):
            lines.append(f"| {label(*key, several_rates)} | {b['beta']:g} | {b['step']} | {_fmt(b['reward'], 2)} | "
                         f"{_fmt(b['kl'], 1)} | {_fmt(b['p_positive'], 3)} | {b['seeds']} |")
        lines += [f"| {label(*key, several_rates)} | – | – | every checkpoint past the budget | | | |"
                  for key in beyond[budget]]
        lines.append("")
    header = " | ".join(title for _, title, _ in TABLE_METRICS)
    lines += ["## Final checkpoints", "", f"| loss | β | seeds | {header} |",
              "|---|---|---|" + "---|" * len(TABLE_METRICS),
              "| reference | – | – | " + " | ".join(f"{reference[name]:.{digits}f}" for name, _, digits in
                                                   TABLE_METRICS) + " |"]
    for (loss, rounds, lr, beta), group in groups.items():
        values = " | ".join(_fmt(group["final"][name], digits) for name, _, digits in TABLE_METRICS)
        lines.append(f"| {label(loss, rounds, lr, several_rates)} | {beta:g} | {len(group['seeds'])} | {values} |")
    lines += ["", "## The losses", "",
              "- `sigmoid` (DPO): −log σ(β·Δ), Δ = (log π/π_ref)(chosen) − (log π/π_ref)(rejected).",
              "- `hinge` (TRL's DPOTrainer): max(0, 1 − β·Δ), anchored to the reference through Δ, margin 1/β, "
              "no likelihood term.",
              "- `ipo`: (Δ̄ − 1/(2β))², Δ̄ the per-token average of Δ (TRL's normalisation).",
              "- `slic` (SLiC-HF, TRL's CPOTrainer hinge): max(0, 1 − β·(log π(chosen) − log π(rejected))) + "
              f"λ·NLL(chosen), λ = {config.slic_lambda:g}: no reference model in the loss; the NLL term on the "
              "chosen text is what keeps the policy near the data instead.",
              "", "Metrics: KL is the mean of log π(y) − log π_ref(y) over the policy's own samples (sequence level); "
              "win rate is the share of held-out prompts where the policy's sample out-scores the reference's; "
              "self-BLEU is BLEU-4 of each sample against the others (higher = more repetitive); ppl under ref is "
              "the reference model's per-token perplexity of the policy's samples.", ""]
    path = run_dir / REPORT
    io.write_text_atomic(path, "\n".join(lines))
    logger.info("wrote %s (%d cells)", path, len(cells))
    return path
