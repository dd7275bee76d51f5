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

from .. import files, layout
from ..errors import PipelineError
from ..evaluation.metrics import JUDGE_COLUMNS, judge_metric
from ..evaluation.stats import mean_ci95
from ..methods.registry import ceiling_objective, method_name
from .sweep import label, pairs_per_round

logger = logging.getLogger(__name__)

TABLE_METRICS = (("reward_mean", "reward", 2), ("p_positive_mean", "p_positive", 3),
                 ("judge_p_positive_mean", "judge p_positive", 3), ("judge_score_mean", "judge score", 3),
                 ("kl", "KL (nats)", 1),
                 ("win_rate", "win rate", 2), ("distinct_1", "distinct-1", 3), ("distinct_2", "distinct-2", 3),
                 ("token_entropy", "entropy (bits)", 2), ("self_bleu", "self-BLEU", 3),
                 ("reference_perplexity", "ppl under ref", 1))


def setting_key(settings: dict[str, Any]) -> tuple[str, int, float, float]:
    """Which curve a cell belongs to: (method, rounds, learning rate), the method being the loss and the values of
    the training options the sweep varies; beta varies along the curve."""
    options = "".join(f", {name} {_value(value)}" for name, value in settings.get("options", ()))
    method = settings.get("method", settings["loss"]) + options
    return method, settings["rounds"], settings["learning_rate"], settings["beta"]


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def _values(values: list[Any]) -> str:
    """A sweep option's values for the report's text: `3` or `1 / 3`."""
    return " / ".join(_value(value) for value in values)


def batch_sizes(values: list[int | None], online: bool) -> str:
    """The sweep's `--batch-size` values as its offline or online cells train with them (unset: the method's
    default)."""
    from ..config import default_batch_size

    default = default_batch_size(online)
    return _values([default if value is None else value for value in values])


def _what_trained(cells: list[dict[str, Any]]) -> str:
    """'What trained: ...' from the cells' records (older cells have none), and sigmoid's labels."""
    kinds = sorted({c.get("provenance", {}).get("trained_parameters") for c in cells} - {None})
    labels = sorted({"soft" if c["settings"].get("soft_labels") else "hard" for c in cells
                     if c["settings"]["loss"] == "sigmoid"})
    return ((f"What trained: {'; '.join(kinds)}. " if kinds else "")
            + (f"`sigmoid`'s labels: {' and '.join(labels)}. " if labels else ""))


def aggregate(cells: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Per (loss, rounds, lr, beta): the seeds, mean ± CI of every final metric, and the mean curve over seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        groups[setting_key(cell["settings"])].append(cell)
    out = {}
    for key, members in sorted(groups.items()):
        # a sweep without a judge has no judge column, one whose reward is a function no p_positive
        names = [name for name, _, _ in TABLE_METRICS if all(name in p for m in members for p in m["curve"])]
        final = {name: mean_ci95([m["final"][name] for m in members]) for name in names}
        steps: dict[int, list[dict[str, float]]] = defaultdict(list)
        for member in members:
            for point in member["curve"]:
                steps[point["step"]].append(point)
        curve = [{"step": step, **{name: mean_ci95([p[name] for p in points]) for name in names},
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
                                            "kl": point["kl"], "p_positive": point.get("p_positive_mean"),
                                            "judge": point.get(judge_metric(point) or ""), "seeds": point["seeds"]}
    return best


def _fmt(value: tuple[float, float], digits: int) -> str:
    m, half = value
    return f"{m:.{digits}f}" if math.isnan(half) else f"{m:.{digits}f} ± {half:.{digits}f}"


def _separated(higher: dict[str, Any], lower: dict[str, Any]) -> bool:
    """Whether the two rewards' 95% intervals do not overlap (False when either has no interval)."""
    low, high = higher["reward"][0] - higher["reward"][1], lower["reward"][0] + lower["reward"][1]
    return not (math.isnan(low) or math.isnan(high)) and low > high


def _single_seed(*points: dict[str, Any]) -> bool:
    return any(math.isnan(p["reward"][1]) for p in points)


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
            f"{top['seeds']} seed{'s' if top['seeds'] > 1 else ''}).")
    if len(ranked) > 1:
        key2, second = ranked[1]
        text += (f" Runner-up: {label(*key2, several_rates)} with {_fmt(second['reward'], 2)} "
                 f"(β = {second['beta']:g}, step {second['step']}, KL {second['kl'][0]:.1f}). The difference, "
                 f"{top['reward'][0] - second['reward'][0]:.2f}, is "
                 + ("larger than the seed spread (the 95% intervals do not overlap)." if _separated(top, second) else
                    "not tested: one training seed gives no spread to compare it with." if _single_seed(top, second)
                    else "within the seed spread (the 95% intervals overlap), so this sweep does not separate them."))
    others = ", ".join(f"{label(*k, several_rates)} {_fmt(v['reward'], 2)}" for k, v in ranked[2:])
    if others:
        text += f" The others: {others}."
    below = [label(*k, several_rates) for k, v in ranked[1:] if _separated(top, v)]
    if below:
        text += f" Below the best by more than the seed spread: {', '.join(below)}."
    return text + past + (" (The best point is picked among many checkpoints, which favours noisy curves a little; "
                   "the intervals are over seeds at that one point.)")


def _load_cells(run_dir: Path) -> list[dict[str, Any]]:

    cells = []
    for file in sorted((run_dir / layout.SWEEP_CELLS).glob(f"*/{layout.CELL_RECORD}")):
        cell = json.loads(file.read_text(encoding="utf-8"))
        cell["folder"] = file.parent
        cells.append(cell)
    return cells


def _ceiling(run_dir: Path) -> tuple[list, list] | None:
    """(optimum, best-of-n) from the reference's ceiling samples, if the sweep drew them."""
    from ..evaluation.ceiling_samples import curves

    file = run_dir / layout.SWEEP_REFERENCE / layout.CEILING_SAMPLES
    if not file.exists():
        return None
    return curves(files.read_jsonl(file, ("prompt_index", "reward"), "python3 sweep.py"))


def _against_ceiling(optimum: list | None, kl: float, reward: float) -> str:
    """Table cells: the KL overhead and the share of the optimum's gain at the same KL ("–" without a ceiling)."""
    from ..evaluation.ceiling_samples import against_ceiling

    if not optimum:
        return "– | –"
    fields = against_ceiling(optimum, kl, reward)
    return f"{fields['kl_overhead_text']} | {fields['ceiling_gain_share_text']}"


def _budget_finding(best: dict[tuple, dict[str, Any]], budget: float, several_rates: bool, beyond: Sequence[tuple],
                    optimum: list | None) -> str:
    """`finding`, plus the best method's KL overhead and share of the ceiling's gain when the sweep has one."""
    from ..evaluation.ceiling_samples import against_ceiling

    text = finding(best, budget, several_rates, beyond)
    if optimum and best:
        top = max(best.values(), key=lambda b: b["reward"][0])
        fields = against_ceiling(optimum, top["kl"][0], top["reward"][0])
        text += (f" Against the ceiling: KL overhead {fields['kl_overhead_text']}, share of the optimum's reward "
                 f"gain at the same KL {fields['ceiling_gain_share_text']}.")
    return text


def write_report(run_dir: Path, config) -> Path:
    """report.md of the sweep in `run_dir` (and its plots next to it), from its finished cells."""
    from ..evaluation.ceiling_samples import markdown_lines

    cells = _load_cells(run_dir)
    if not cells:
        raise PipelineError(f"{run_dir} holds no finished training yet; run `python3 sweep.py` first")
    reference = json.loads((run_dir / layout.SWEEP_REFERENCE / layout.METRICS).read_text())
    groups = aggregate(cells)
    several_rates = len({key[2] for key in groups}) > 1
    ceiling = _ceiling(run_dir)
    optimum = ceiling[0] if ceiling else None
    # the judge's metric (a classifier's p_positive or a function's score), if every setting has it
    judge = {judge_metric(group["final"]) for group in groups.values()}
    judge = judge.pop() if len(judge) == 1 else None
    best = {budget: best_under_budget(groups, budget) for budget in config.kl_budgets}
    settings = list(dict.fromkeys(key[:3] for key in groups))  # (loss, rounds, lr), in the groups' order
    beyond = {budget: [key for key in settings if key not in per_setting] for budget, per_setting in best.items()}
    _draw_plots(run_dir, config, cells, groups, reference, several_rates, ceiling, judge)
    lines = _opening_lines(config, cells, best, beyond, several_rates, ceiling, judge)
    if ceiling:
        lines += markdown_lines(*ceiling)
    lines += _budget_tables(best, beyond, several_rates, optimum, judge)
    lines += _final_table(groups, reference, several_rates, optimum)
    lines += _method_lines(config)
    path = run_dir / layout.SWEEP_REPORT
    files.write_text_atomic(path, "\n".join(lines))
    logger.info("wrote %s (%d cells)", path, len(cells))
    return path


def _draw_plots(run_dir: Path, config, cells: list[dict[str, Any]], groups: dict[tuple, dict[str, Any]],
                reference: dict[str, float], several_rates: bool, ceiling, judge: str | None) -> None:
    """frontier.png, judge_frontier.png (with a judge), diversity_vs_reward.png and reward_hists.png."""
    from . import sweep_plots

    sweep_plots.frontier(groups, reference, several_rates, "kl", "KL(policy ‖ reference), nats (symlog; dotted: the KL "
                         "budgets)", run_dir / "frontier.png", budgets=config.kl_budgets, ceiling=ceiling)
    if judge:
        sweep_plots.frontier(groups, reference, several_rates, "kl", "KL(policy ‖ reference), nats (symlog)",
                             run_dir / "judge_frontier.png", ceiling=ceiling, y_metric=judge,
                             ylabel="held-out judge's mean " + ("p(positive)" if judge == "judge_p_positive_mean"
                                                                else "score"))
    sweep_plots.frontier(groups, reference, several_rates, "distinct_2", "distinct-2 (higher = more diverse)",
                         run_dir / "diversity_vs_reward.png", x_is_kl=False)
    samples = defaultdict(dict)
    for cell in cells:
        key = setting_key(cell["settings"])
        rows = files.read_jsonl(cell["folder"] / layout.SAMPLES, ("reward",), "python3 sweep.py")
        samples[label(key[0], key[1], key[2], several_rates)].setdefault(key[3], []).extend(r["reward"] for r in rows)
    reference_rows = files.read_jsonl(run_dir / layout.SWEEP_REFERENCE / layout.SAMPLES, ("reward",),
                                      "python3 sweep.py")
    reference_rewards = [r["reward"] for r in reference_rows]
    sweep_plots.reward_histograms_per_loss(samples, reference_rewards, run_dir / "reward_hists.png")


def _opening_lines(config, cells: list[dict[str, Any]], best: dict, beyond: dict, several_rates: bool, ceiling,
                   judge: str | None) -> list[str]:
    """The report's settings paragraph, its findings and the plots with their captions."""
    from ..methods.registry import is_online

    optimum = ceiling[0] if ceiling else None
    lines = ["# Sweep report", "",
             f"Policy `{config.policy}`, reward `{config.reward}`, held-out judge `{config.judge}`; "
             f"{config.num_pairs or 'every pair, up to ' + str(pairs_per_round(config))} pairs per round from "
             f"{config.num_samples} samples, {_values(config.epochs)} "
             f"epoch{'' if config.epochs == [1.0] else 's'} "
             f"at batch {batch_sizes(config.batch_size, online=False)}"
             + (f" (online methods: as many steps, {batch_sizes(config.batch_size, online=True)} completions each)"
                if any(is_online(loss) for loss in config.losses) else "") + "; every "
             f"{config.eval_every} steps each policy is evaluated on {config.eval_prompts} held-out prompts "
             f"(one pure sample each, {config.max_new_tokens} new tokens). {_what_trained(cells)}"
             f"{len(cells)} finished trainings, "
             f"{sum(c['seconds'] for c in cells) / 60:.0f} min of training and evaluation in total. "
             "Values are means over training seeds ± the half-width of the 95% t-interval.", "",
             "## Findings", "",
             *[f"- {_budget_finding(best[budget], budget, several_rates, beyond[budget], optimum)}"
               for budget in best], "",
             "## Reward–KL frontier", "",
             "Large markers: final checkpoints (one per β, error bars over seeds); thin lines: the checkpoints of "
             "each training (mean over seeds), starting at the reference (KL 0)"
             + ("; black: the ceiling (KL-regularised optimum), olive squares: best-of-n of the reference" if ceiling
                else "") + ".", "",
             "![frontier](frontier.png)", ""]
    if judge:
        lines += ["The held-out judge (never used for training) on the same checkpoints: where the reward rises and "
                  "the judge does not, the policy exploits the reward model rather than writing more positive text.",
                  "", "![judge frontier](judge_frontier.png)", ""]
    lines += ["![diversity vs reward](diversity_vs_reward.png)", "", "![reward histograms](reward_hists.png)", ""]
    return lines


def _budget_tables(best: dict, beyond: dict, several_rates: bool, optimum, judge: str | None) -> list[str]:
    """Per KL budget, the best checkpoint of each setting within it (p_positive where the reward gives one)."""
    lines: list[str] = []
    extra = [name for name, present in (("p_positive", True), ("judge", judge)) if present
             and all(b[name] is not None for per_loss in best.values() for b in per_loss.values())]
    header = "".join(f" {JUDGE_COLUMNS[judge.removesuffix('_mean')] if name == 'judge' else name} |"
                     for name in extra)
    for budget, per_loss in best.items():
        lines += [f"## Best checkpoint within KL ≤ {budget:g} nats", "",
                  f"| method | β | step | reward | KL | KL overhead | share of the ceiling's gain |{header} seeds |",
                  "|---|---|---|---|---|---|---|" + "---|" * len(extra) + "---|"]
        for key, b in sorted(per_loss.items(), key=lambda item: -item[1]["reward"][0]):
            cells = "".join(f" {_fmt(b[name], 3)} |" for name in extra)
            lines.append(f"| {label(*key, several_rates)} | {b['beta']:g} | {b['step']} | {_fmt(b['reward'], 2)} | "
                         f"{_fmt(b['kl'], 1)} | {_against_ceiling(optimum, b['kl'][0], b['reward'][0])} |"
                         f"{cells} {b['seeds']} |")
        lines += [f"| {label(*key, several_rates)} | – | – | every checkpoint past the budget | | | |"
                  + " |" * len(extra) + " |" for key in beyond[budget]]
        lines.append("")
    return lines


def _final_table(groups: dict[tuple, dict[str, Any]], reference: dict[str, float], several_rates: bool,
                 optimum) -> list[str]:
    """Every setting's final checkpoint, means over seeds, beside the reference: the metrics every setting has."""
    metrics = [m for m in TABLE_METRICS if all(m[0] in group["final"] for group in groups.values())]
    header = " | ".join(title for _, title, _ in metrics)
    lines = ["## Final checkpoints", "",
             f"| method | β | seeds | {header} | KL overhead | share of the ceiling's gain |",
             "|---|---|---|" + "---|" * (len(metrics) + 2),
             "| reference | – | – | " + " | ".join(f"{reference[name]:.{digits}f}" for name, _, digits in metrics)
             + " | – | – |"]
    for (loss, rounds, lr, beta), group in groups.items():
        values = " | ".join(_fmt(group["final"][name], digits) for name, _, digits in metrics)
        ceiling_cells = _against_ceiling(optimum, group["final"]["kl"][0], group["final"]["reward_mean"][0])
        lines.append(f"| {label(loss, rounds, lr, several_rates)} | {beta:g} | {len(group['seeds'])} | {values} | "
                     f"{ceiling_cells} |")
    return lines


def _objective_lines(config) -> list[str]:
    """Per method of the sweep, whether its population minimiser is the policy the ceiling draws."""
    from .sweep import grid, training_config

    rows = []
    for cell in grid(config):
        soft = training_config(config, cell).soft_labels  # as the cell trained: the recipe's or the option's
        rows.append((f"{method_name(cell.loss)}{', soft labels' if soft else ''}", ceiling_objective(cell.loss, soft)))
    return ["Whether each method's population minimiser is the KL-regularised optimum the ceiling draws "
            "(docs/methods.md): where it is not, a gap to the ceiling mixes another objective with optimisation "
            "error.", "", "| method | minimiser is the ceiling's policy |", "|---|---|",
            *(f"| {name} | {objective} |" for name, objective in dict(rows).items()), ""]


def _method_lines(config) -> list[str]:
    """What each method optimises, and what each metric is."""
    return ["", "## The methods", "",
            "- `sigmoid` (DPO): −log σ(β·Δ), Δ = (log π/π_ref)(chosen) − (log π/π_ref)(rejected).",
            "- `soft_labels true` (sigmoid): −q·log σ(β·Δ) − (1 − q)·log σ(−β·Δ) with q = σ(r_chosen − r_rejected), "
            "the reward's probability that the chosen text wins: minimised by the KL-regularised optimum at β.",
            "- `hinge` (TRL's DPOTrainer): max(0, 1 − β·Δ), anchored to the reference through Δ, margin 1/β, "
            "no likelihood term.",
            "- `ipo`: (Δ̄ − 1/(2β))², Δ̄ the per-token average of Δ (TRL's normalisation).",
            "- `slic` (SLiC-HF, CPOTrainer's hinge loss): max(0, 1 − β·(log π(chosen) − log π(rejected))) + "
            f"λ·NLL(chosen), λ = {_values(config.slic_lambda)}: no reference model in the loss; the NLL term on "
            "the chosen text is what keeps the policy near the data instead.",
            "- `sft` (Preferred-FT): the NLL of the chosen texts only; β plays no part.",
            f"- `rloo` (TRL's RLOOTrainer): REINFORCE on {_values(config.num_generations)} samples per training "
            "prompt, each baselined by the mean reward of the others, reward minus β·KL(sequence) to the reference.",
            f"- `grpo` (TRL's GRPOTrainer): {_values(config.num_generations)} samples per prompt, advantages "
            "standardised within the prompt's group, clipped objective plus β·KL(π‖π_ref) in the loss.",
            "- `online_dpo` (TRL's experimental OnlineDPOTrainer): two samples per prompt, the higher-reward one "
            "chosen, the sigmoid DPO loss with β.",
            "", "The online methods sample from the policy being trained on the training prompts, score with the "
            "same reward (the positive class's logit, found by name), pure sampling, the same max new tokens.", "",
            *_objective_lines(config),
            "Metrics: KL is the Rao-Blackwellised estimate of KL(π ‖ π_ref) on the policy's own samples (the exact "
            "KL of the next-token distributions summed along each sample; docs/metrics.md); "
            "win rate is the share of held-out prompts where the policy's sample out-scores the reference's; "
            "judge p_positive is the held-out judge's mean positive probability (judge score: a judge function's "
            "mean value); p_positive is left out where the reward is a function (its values are no probability); "
            "self-BLEU is BLEU-4 of each sample against the others (higher = more repetitive); ppl under ref is "
            "the reference model's per-token perplexity of the policy's samples.", ""]
