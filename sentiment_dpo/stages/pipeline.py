"""All four stages in order, for one or more losses, and a markdown summary of the run."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import files, layout
from ..embedded import default_models
from ..config import GenerationConfig, MetricsConfig, PairsConfig, TrainingConfig
from ..config_parser import check_options, check_types, read_yaml_mapping
from ..presets import preset_training_defaults
from ..distributed import is_main_process
from ..errors import PipelineError
from ..methods.own_loss import check_methods
from ..methods.registry import ceiling_objective, check_method, check_read_by_some, reads
from ..evaluation.metrics import JUDGE_COLUMNS, judge_metric, measurable_drift
from ..peak_memory import peak_memory
from ..prompts import describe

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Target:
    """An acceptance target of the embedded default: a measured value must lie in [low, high] (None: unbounded)."""
    what: str
    low: float | None
    high: float | None = None

    def text(self, percent: bool = False) -> str:
        show = (lambda v: f"{v:+.0%}") if percent else (lambda v: f"{v:g}")
        if self.high is None:
            return f"{self.what} >= {show(self.low)}"
        return f"{self.what} in [{show(self.low)}, {show(self.high)}]"

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


# The embedded default's targets, the one home of their numbers (SUMMARY.md's Targets, scripts/check_targets.py):
# a reward worth aligning to, a start with room both ways, and for each default method a gain that keeps diversity.
REWARD_ACCURACY = Target("embedded reward: held-out sentence accuracy", 0.80)
START_P_POSITIVE = Target("starting policy: mean p_positive", 0.25, 0.75)
P_POSITIVE_GAIN = Target("p_positive gain", 0.20)
DISTINCT_2_CHANGE = Target("distinct-2 change", -0.10, 0.10)
TARGET_METHODS = ("sigmoid", "hinge")  # the methods the gain and diversity targets are set for


@dataclass
class PipelineConfig:
    run_dir: str = "runs/default"
    # the seed experiment: DPO and the SLiC-style hinge, each against the ceiling
    losses: list[str] = field(default_factory=lambda: ["sigmoid", "hinge"])
    seed: int = 0
    bitwise: bool = False
    preset: str = "embedded"
    # stage 3's --recipe for every pair method (None: 'standard'); the online methods have none
    recipe: str | None = None
    # Per-stage options, as in each script's --config file (e.g. {"learning_rate": 1e-4} for training).
    generation: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


STAGE_SECTIONS = {"generation": GenerationConfig, "pairs": PairsConfig, "training": TrainingConfig,
                  "metrics": MetricsConfig}


def load_pipeline_yaml(path: str) -> dict[str, Any]:
    """A pipeline YAML file: top-level run_dir/losses/seed/preset plus one mapping of options per stage."""
    data = read_yaml_mapping(path)
    known = {f.name for f in fields(PipelineConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PipelineError(f"--config {path} sets unknown key(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(sorted(known))}")
    top = {k: v for k, v in data.items() if k not in STAGE_SECTIONS}
    data |= check_types(top, PipelineConfig, f"--config {path}")
    for section, cls in STAGE_SECTIONS.items():
        if section in data:
            if not isinstance(data[section], dict):
                raise PipelineError(f"--config {path}: {section} must be a mapping of option: value")
            where = f"--config {path} ({section})"
            data[section] = check_types(check_options(data[section], cls, where), cls, where)
    return data


def run(config: PipelineConfig) -> Path:
    """Run every stage into `config.run_dir`, then write SUMMARY.md there; return its path."""
    from . import evaluate, pairs, generate, train

    training_configs = {loss: training_config(config, loss) for loss in config.losses}  # fail now, not later
    names = [training.name for training in training_configs.values()]
    check_methods(config.losses, names)
    common = {"run_dir": config.run_dir, "seed": config.seed, "bitwise": config.bitwise}
    timings: dict[str, float] = {}
    peaks: dict[str, float] = {}  # GiB

    def timed(name: str, fn, stage_config) -> Any:
        start = time.time()
        with peak_memory() as peak:
            result = fn(stage_config)
        timings[name] = time.time() - start
        peaks[name] = round(peak.gigabytes, 2)
        logger.info("stage %s took %.0f s, peak memory %.1f GiB", name, timings[name], peaks[name])
        return result

    start = time.time()
    generation, pairs_config = generation_config(config), PairsConfig(**(common | config.pairs))
    metrics_configs = {name: MetricsConfig(**(common | config.metrics | {"loss": name})) for name in names}
    if is_main_process():  # one probe and one line, not one per process
        announce_estimate(generation, pairs_config, dict(zip(names, training_configs.values())), metrics_configs)
    timed("text_generation", generate.run, generation)
    timed("prepare_dataset", pairs.run, pairs_config)
    for loss, name in zip(config.losses, names):
        timed(f"main {name}", train.run, training_configs[loss])
        timed(f"calculate_metrics {name}", evaluate.run, metrics_configs[name])
    timings["total"] = time.time() - start
    if not is_main_process():
        return Path(config.run_dir) / layout.SUMMARY
    record = {"machine": files.machine_description(), "seconds": timings, "peak_memory_gib": peaks}
    files.write_json(Path(config.run_dir) / layout.TIMINGS, record)
    return write_summary(Path(config.run_dir), names, record)


def announce_estimate(generation: GenerationConfig, pairs_config: PairsConfig, trainings: dict[str, TrainingConfig],
                      metrics: dict[str, MetricsConfig]) -> None:
    """Before any work: the run's expected time and peak memory on this machine, and a warning naming the setting to
    change where a training would not fit in its memory (`run_estimate`)."""
    from ..run_estimate import estimate

    expected = estimate(generation, pairs_config, trainings, metrics)
    if expected is None:
        logger.info("no estimate of this run's time: no per-unit costs were measured for its policy %s on a CPU "
                    "(docs/original_experiment.md)", generation.policy)
        return
    logger.info(expected.line())
    for warning in expected.memory_warnings():
        logger.warning(warning)


def generation_config(config: PipelineConfig) -> GenerationConfig:
    return GenerationConfig(run_dir=config.run_dir, seed=config.seed, bitwise=config.bitwise,
                            **({"preset": config.preset} | config.generation))


def training_config(config: PipelineConfig, loss: str) -> TrainingConfig:
    """Stage 3's config for `loss`: the preset's training defaults, then the pipeline's training options, each
    method getting those it reads (an option none of the losses reads is refused)."""
    check_method(loss)
    options = config.training | ({"recipe": config.recipe} if config.recipe else {})
    check_read_by_some(options, config.losses, "the pipeline")
    policy = generation_config(config).policy
    values = preset_training_defaults(policy, loss) | {k: v for k, v in options.items() if reads(loss, k)}
    training = TrainingConfig(run_dir=config.run_dir, seed=config.seed, bitwise=config.bitwise, loss=loss, **values)
    from ..methods.token_bias import check_reward  # imports torch: not at --help

    check_reward(training, generation_config(config).reward)
    return training


def target_checks(run_dir: Path, losses: list[str]) -> list[tuple[str, str, bool | None]]:
    """(what, measured, passed) rows for the embedded default's targets; passed is None when not applicable (a
    method the targets are not set for)."""
    rows: list[tuple[str, str, bool | None]] = []
    generation = files.read_yaml(run_dir / layout.GENERATION_CONFIG, "python3 text_generation.py")
    reward_quality = default_models.quality("reward") if generation["reward"] == "embedded" else None
    if reward_quality:
        accuracy = reward_quality["heldout_sentence_accuracy"]
        rows.append((REWARD_ACCURACY.text(), f"{accuracy:.3f}", REWARD_ACCURACY.holds(accuracy)))
    for loss in losses:
        metrics = json.loads((run_dir / layout.results_dir(loss) / layout.METRICS).read_text())
        if "p_positive_mean" not in metrics["policy"]:  # a reward function: the targets are set on p_positive
            continue
        start, end = metrics["reference"]["p_positive_mean"], metrics["policy"]["p_positive_mean"]
        if loss == losses[0]:
            rows.append((START_P_POSITIVE.text(), f"{start:.3f}", START_P_POSITIVE.holds(start)))
        is_target = loss in TARGET_METHODS
        gain, change = P_POSITIVE_GAIN, DISTINCT_2_CHANGE
        rows.append((f"{loss}: " + (gain.text() if is_target else gain.what), f"{end - start:+.3f}",
                     gain.holds(end - start) if is_target else None))
        what = f"{loss}: " + (change.text(percent=True) if is_target else change.what)
        if metrics["reference"]["distinct_2"] == 0:  # no word pairs in the reference's samples: no ratio to take
            rows.append((what, "n/a (the reference's samples hold no word pairs)", None))
            continue
        drift = metrics["policy"]["distinct_2"] / metrics["reference"]["distinct_2"] - 1.0
        rows.append((what, f"{drift:+.1%}", change.holds(drift) if is_target else None))
    return rows


SAMPLE_PROMPTS = 4


def _kl_text(metrics: dict[str, Any]) -> str:
    """The policy's KL, or "≈ 0" within one standard error of no drift (its sign is then noise)."""
    if "kl_standard_error" in metrics and not measurable_drift(metrics["kl"], metrics["kl_standard_error"]):
        return "≈ 0"
    return f"{metrics['kl']:.2f}"


def _interval(interval: list[float] | None, spec: str) -> str:
    return f" [{interval[0]:{spec}}, {interval[1]:{spec}}]" if interval else ""


def sample_lines(run_dir: Path, losses: list[str], prompts: int = SAMPLE_PROMPTS) -> list[str]:
    """A few held-out prompts with the reference's completion and each trained policy's (the same sampling seed),
    each with its reward: what the numbers above look like."""
    rows = {loss: files.read_jsonl(run_dir / layout.results_dir(loss) / layout.SAMPLES, ("model", "prompt_index"),
                                "python3 calculate_metrics.py") for loss in losses}

    def first(loss: str, model: str, index: int) -> dict[str, Any] | None:
        return next((r for r in rows[loss] if r["model"] == model and r["prompt_index"] == index), None)

    lines = ["", "## Samples", "", f"The first {prompts} held-out prompts, one sample of each model drawn with the "
             "same seed, and its reward:", ""]
    for index in range(prompts):
        reference = first(losses[0], "reference", index)
        if reference is None:
            break
        lines += [f"**{reference['prompt']}**", "", "| model | completion | reward |", "|---|---|---|",
                  f"| reference | {_cell(reference['completion'])} | {reference['reward']:.2f} |"]
        for loss in losses:
            sample = first(loss, "policy", index)
            if sample is not None:
                lines.append(f"| {loss} | {_cell(sample['completion'])} | {sample['reward']:.2f} |")
        lines.append("")
    return lines


def _cell(text: str) -> str:
    """A completion as one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|") or "(empty)"


def write_summary(run_dir: Path, losses: list[str], timings: dict[str, Any] | None = None) -> Path:
    """SUMMARY.md: the metrics table per loss, the ceiling and each loss's KL overhead, a few held-out samples, the
    target checks, the plots, and the stage timings (timings.json's record: the machine and each stage's seconds)."""
    generation = files.read_yaml(run_dir / layout.GENERATION_CONFIG, "python3 text_generation.py")
    results = {loss: json.loads((run_dir / layout.results_dir(loss) / layout.METRICS).read_text()) for loss in losses}
    lines = _metrics_table(generation, results, losses)
    lines += _ceiling_section(run_dir, results, losses)
    lines += sample_lines(run_dir, losses)
    lines += _targets_plots_timings(run_dir, losses, timings)
    path = run_dir / layout.SUMMARY
    files.write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _metrics_table(generation: dict[str, Any], results: dict[str, dict[str, Any]], losses: list[str]) -> list[str]:
    """What ran, and each loss's reference and policy rows with the policy's intervals."""
    lines = [
        "# Run summary", "",
        f"Policy `{generation['policy']}`, reward `{generation['reward']}`, {generation['num_samples']} samples "
        f"({describe(generation)}; pure sampling, {generation['max_new_tokens']} new tokens), "
        f"seed {generation['seed']}; held-out judge `{results[losses[0]]['provenance'].get('judge')}`.", "",
        f"| loss | model | reward mean ± std | p_positive | {_judge_header(results)} | positive rate | distinct-1/2/3 "
        "| word entropy (bits) | KL (nats) | KL overhead | share of the ceiling's gain | win rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for loss, metrics in results.items():
        intervals = metrics.get("intervals", {})
        for name in ("reference", "policy"):
            m = metrics[name]
            # the policy's point carries its 95% bootstrap interval over prompts; KL, its overhead and the win rate
            # describe the policy against the reference: none for the reference
            ci = intervals if name == "policy" else {}
            overhead = metrics.get("kl_overhead_text", "–") + _interval(ci.get("kl_overhead_ci95"), ".1f")
            pair_cells = (f"{_kl_text(metrics)}{_interval(ci.get('kl_ci95'), '.2f')} | {overhead} | "
                          f"{metrics.get('ceiling_gain_share_text', '–')} | {metrics['win_rate']:.3f}"
                          if name == "policy" else "– | – | – | –")
            judge = f"{m[key]:.3f}" if (key := judge_metric(m)) else "–"
            p_positive, rate = ((f"{m['p_positive_mean']:.3f}{_interval(ci.get('p_positive_mean_ci95'), '.3f')}",
                                 f"{m['positive_rate']:.3f}") if "p_positive_mean" in m else ("–", "–"))
            lines.append(
                f"| {loss} | {name} | {m['reward_mean']:.2f}{_interval(ci.get('reward_mean_ci95'), '.2f')} ± "
                f"{m['reward_std']:.2f} | {p_positive} "
                f"| {judge} | {rate} | {m['distinct_1']:.3f} / {m['distinct_2']:.3f} / "
                f"{m['distinct_3']:.3f} | {m['token_entropy']:.2f} | {pair_cells} |")
    if "p_positive_mean" not in results[losses[0]]["policy"]:
        lines += ["", f"p_positive and the positive rate: none, the reward `{generation['reward']}` is a function, "
                  "whose values are not a classifier's probability."]
    lines += ["", "Brackets: 95% bootstrap intervals over the held-out prompts (the ceiling resampled with them); "
              "± : the standard deviation over samples. KL: the Rao-Blackwellised estimate (the exact KL of the "
              "next-token distributions summed along each of the policy's samples), which prices the KL overhead; "
              "beside it, the Monte-Carlo one (the mean log-ratio of the same samples), both unbiased:", ""]
    for loss, metrics in results.items():
        intervals = metrics.get("intervals", {})
        if "kl_monte_carlo" not in metrics or "kl_monte_carlo_ci95" not in intervals:
            continue
        (low, high), (mc_low, mc_high) = intervals["kl_ci95"], intervals["kl_monte_carlo_ci95"]
        narrower = f", {(mc_high - mc_low) / (high - low):.1f}x narrower" if high > low else ""
        lines.append(f"- {loss}: Rao-Blackwellised {metrics['kl']:.2f} [{low:.2f}, {high:.2f}]{narrower}; "
                     f"Monte-Carlo {metrics['kl_monte_carlo']:.2f} [{mc_low:.2f}, {mc_high:.2f}]")
    return lines


def _judge_header(results: dict[str, dict[str, Any]]) -> str:
    key = next(filter(None, (judge_metric(m["policy"]) for m in results.values())), "judge_p_positive_mean")
    return JUDGE_COLUMNS[key.removesuffix("_mean")]


def _ceiling_section(run_dir: Path, results: dict[str, dict[str, Any]], losses: list[str]) -> list[str]:
    """frontier.png (every loss against the ceiling) and the ceiling's table; nothing without a ceiling."""
    from ..evaluation import plots
    from ..evaluation.ceiling_samples import markdown_lines, points_from_summary

    ceiling = results[losses[0]].get("ceiling")
    if not ceiling:
        return []
    optimum, best_of_n = points_from_summary(ceiling)
    plots.ceiling_frontier({loss: (m["kl"], m["policy"]["reward_mean"]) for loss, m in results.items()},
                           results[losses[0]]["reference"]["reward_mean"], optimum, best_of_n,
                           run_dir / layout.FRONTIER_PLOT)
    objectives = ["Whether each method's population minimiser is the policy the ceiling draws "
                  "(docs/methods.md says why): where it is not, a gap to the ceiling mixes "
                  "another objective with optimisation error.", "", "| method | minimiser is the ceiling's policy |",
                  "|---|---|"]
    for loss in losses:
        training = files.read_yaml(run_dir / layout.model_dir(loss) / layout.TRAINING_CONFIG, "python3 main.py")
        objectives.append(f"| {loss} | {ceiling_objective(training['loss'], training.get('soft_labels'))} |")
    # the ceiling's section defines the KL overhead and the share of the ceiling's gain
    return ["", "![trained policies against the ceiling](frontier.png)", "", *markdown_lines(optimum, best_of_n),
            *objectives, ""]


def _targets_plots_timings(run_dir: Path, losses: list[str], timings: dict[str, Any] | None) -> list[str]:
    """The target checks, each loss's plots and the stage timings."""
    lines = ["", "## Targets", "", "| check | measured | result |", "|---|---|---|"]
    for what, measured, passed in target_checks(run_dir, losses):
        verdict = "–" if passed is None else ("pass" if passed else "**FAIL**")
        lines.append(f"| {what} | {measured} | {verdict} |")
    lines += ["", "## Plots", ""]
    for loss in losses:
        for name in ("reward_hist", "p_positive_hist", "diversity", "training"):
            if (run_dir / layout.results_dir(loss) / f"{name}.png").exists():
                lines.append(f"![{loss} {name}]({layout.results_dir(loss).as_posix()}/{name}.png)")
        lines.append("")
    if timings:
        machine = timings["machine"]
        lines += ["## Timings", "", f"On {machine['cpu']} ({machine['cores']} cores, torch on "
                  f"{machine['torch_threads']} threads, {machine['cpu_capability']} kernels).", "",
                  "| stage | seconds | peak memory (GiB) |", "|---|---|---|"]
        peaks = timings.get("peak_memory_gib", {})  # older records have none
        lines += [f"| {name} | {seconds:.0f} | {peaks[name]:.1f} |" if name in peaks else
                  f"| {name} | {seconds:.0f} | – |" for name, seconds in timings["seconds"].items()]
    return lines
