"""Stage 4: reference vs trained policy on held-out prompts (the one evaluator), the ceiling, JSON and PNGs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from ..evaluation import ceiling_samples, plots
from .. import files, layout
from ..config import GenerationConfig, MetricsConfig, config_to_dict
from ..presets import PRESETS
from ..distributed import is_main_process
from ..embedded.corpus import cache_notation
from ..errors import PipelineError
from ..evaluation.evaluator import PAIR_METRICS, EvalSettings, Evaluator
from ..evaluation.intervals import policy_intervals
from ..locks import exclusive
from ..methods.registry import check_method
from ..evaluation.metrics import kl_standard_error
from ..methods.model_card import CARD, model_card
from ..models import RECORDED_MODEL_FIX, load_policy, load_scorer, refuse_non_finite_weights, resolve_device
from ..scoring import function_records
from ..prompts import Pools, check_unchanged, choose_prompts, prompts_digest
from ..generation import OWN_DISTRIBUTION_TEMPERATURE, sampling_record
from .generate import policy_prompt_pools

logger = logging.getLogger(__name__)

# The reference's own evaluation files, shared by every loss of a run directory (the ceiling's samples).


def judge_spec(config: MetricsConfig, generation: dict[str, Any]) -> str | None:
    """The judge to load: --judge, else the preset's; None for 'none'."""
    spec = config.judge or PRESETS[generation.get("preset", "embedded")]["judge"]
    return None if spec == "none" else spec


def held_out_evaluator(config: MetricsConfig, generation: dict[str, Any], device) -> tuple[Evaluator, Pools]:
    """Stage 4's evaluator: the recorded reference, reward and judge on `config.num_prompts` held-out prompts of the
    recorded prompt source (and the pools they were drawn from)."""
    judge = judge_spec(config, generation)
    reference = load_policy(generation["policy"], device, fix=RECORDED_MODEL_FIX)
    reward = load_scorer(generation["reward"], device, positive_label=generation.get("positive_label"),
                         fix=RECORDED_MODEL_FIX)
    judge_scorer = load_scorer(judge, device, kind="judge") if judge is not None else None
    max_new_tokens = generation["max_new_tokens"]  # the policy's own distribution, whatever stage 1's temperature
    pools = policy_prompt_pools(generation, reference, max_new_tokens)
    check_unchanged(generation, pools, f"python3 calculate_metrics.py {config.loss}")
    prompts = choose_prompts(pools, "heldout", config.num_prompts, config.seed)
    return Evaluator(reference, reward, judge_scorer, EvalSettings(
        prompts, config.samples_per_prompt, max_new_tokens, config.batch_size, config.seed)), pools


def default_evaluator(device) -> Evaluator:
    """Stage 4's evaluator for the default run (`python3 run_pipeline.py` with no options), no stage run first."""
    return held_out_evaluator(MetricsConfig(), config_to_dict(GenerationConfig()), device)[0]


def run(config: MetricsConfig) -> dict[str, Any]:
    """Write results/LOSS/metrics.json, samples.jsonl, plots and resolved config; return the metrics."""
    run_dir = Path(config.run_dir)
    trained_dir = run_dir / layout.model_dir(config.name)
    if config.method_name is None and not trained_dir.exists():  # a typo of a built-in name: say which there are
        check_method(config.loss)
    generation = files.read_yaml(run_dir / layout.GENERATION_CONFIG, "python3 text_generation.py")
    files.check_no_file_in_the_way(run_dir / layout.results_dir(config.name))  # before the minutes of sampling
    if not (trained_dir / "config.json").exists():
        raise PipelineError(f"{trained_dir} holds no trained model; run `python3 main.py {config.loss}` first")
    device = resolve_device(config.device)
    retrain = f"retrain it: `python3 main.py {config.loss}`"
    policy = load_policy(str(trained_dir), device, fix=retrain)
    refuse_non_finite_weights(policy.model, str(trained_dir), retrain + " with a lower --learning-rate")
    evaluator, pools = held_out_evaluator(config, generation, device)
    reference_metrics, reference_rows = evaluator.evaluate_reference()
    policy_metrics, policy_rows = evaluator.evaluate(policy.model, policy.tokenizer)
    metrics = _metrics(config, generation, evaluator, pools, reference_metrics, policy_metrics, policy_rows)
    optimum = best_of_n = ceiling_rewards = None
    if config.ceiling_samples:
        rows = ceiling_samples.load_or_sample(run_dir / layout.REFERENCE_RESULTS, evaluator, config.ceiling_samples)
        optimum, best_of_n = ceiling_samples.curves(rows, config.seed)
        ceiling_rewards = ceiling_samples.per_prompt_rewards(rows)
        metrics["ceiling"] = ceiling_samples.summary(optimum, best_of_n)
        metrics |= ceiling_samples.against_ceiling(optimum, metrics["kl"], metrics["policy"]["reward_mean"],
                                                   metrics["kl_standard_error"])
    metrics["intervals"] = policy_intervals(policy_rows, ceiling_rewards, config.seed)
    if not is_main_process():  # every process holds all samples; one writes the results
        return metrics
    _write_atomically(run_dir / layout.results_dir(config.name), config, metrics, reference_rows, policy_rows,
                      optimum, best_of_n, trained_dir)
    training_record = trained_dir / layout.TRAINING_CONFIG
    if training_record.exists():  # the model card gains the evaluation
        training = files.read_yaml(training_record, "python3 main.py")
        files.write_text_atomic(trained_dir / CARD, model_card(training, metrics))
    _log_result(config.name, metrics)
    return metrics


def _metrics(config: MetricsConfig, generation: dict[str, Any], evaluator: Evaluator, pools: Pools,
             reference_metrics: dict[str, Any], policy_metrics: dict[str, Any],
             policy_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """metrics.json without the ceiling and the intervals: both models' metrics, the pair metrics, provenance."""
    reward, judge, prompts = evaluator.reward, evaluator.judge, evaluator.settings.prompts
    metrics = {
        "loss": config.name,
        "reference": {k: v for k, v in reference_metrics.items() if k not in PAIR_METRICS},
        "policy": {k: v for k, v in policy_metrics.items() if k not in PAIR_METRICS},
        **{k: policy_metrics[k] for k in PAIR_METRICS},
        "num_prompts": len(prompts),
        "provenance": {
            "reference_policy": generation["policy"], "policy": str(layout.model_dir(config.name)),
            "reward_model": generation["reward"], "judge": judge_spec(config, generation),
            # where each was loaded from: for the embedded ones a version name and a hash of the adapter and the
            # CPU kernels it was merged on
            "reward_source": cache_notation(reward.source),
            "judge_source": cache_notation(judge.source) if judge is not None else None,
            **function_records(reward=reward, judge=judge),
            "prompts": {"held_out_of": pools.provenance, "prompts_sha256": prompts_digest(prompts)},
            "sampling": sampling_record(evaluator.settings.max_new_tokens, OWN_DISTRIBUTION_TEMPERATURE),
            "seed": config.seed,
        },
    }
    metrics["kl_standard_error"] = kl_standard_error([row["token_kl"] for row in policy_rows])
    metrics["kl_monte_carlo_standard_error"] = kl_standard_error([row["log_ratio"] for row in policy_rows])
    if reward.gives_probability:
        metrics["p_positive_delta"] = metrics["policy"]["p_positive_mean"] - metrics["reference"]["p_positive_mean"]
    return metrics


def _write_atomically(out: Path, config: MetricsConfig, metrics: dict[str, Any], reference_rows: list[dict[str, Any]],
                      policy_rows: list[dict[str, Any]], optimum, best_of_n, trained_dir: Path) -> None:
    """results/LOSS written whole into a staging folder, then swapped in: replaced as a whole, or not at all."""
    with exclusive(out, f"python3 calculate_metrics.py {config.loss}", all_processes=False):
        staging = files.make_staging_dir(out)
        try:
            try:
                _write_results(staging, config, metrics, reference_rows, policy_rows, optimum, best_of_n,
                               trained_dir)
            except OSError as err:  # a plot or file write that names no path (a full disk): name the folder
                if err.filename is None:
                    err.filename = str(out)
                raise
            files.replace_dir_atomic(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _log_result(loss: str, metrics: dict[str, Any]) -> None:
    shown = "p_positive_mean" if "p_positive_mean" in metrics["policy"] else "reward_mean"
    logger.info("%s: %s %.3f -> %.3f, KL %.2f nats, distinct-2 %.3f -> %.3f, win rate %.2f%s", loss,
                shown.removesuffix("_mean"), metrics["reference"][shown], metrics["policy"][shown], metrics["kl"],
                metrics["reference"]["distinct_2"], metrics["policy"]["distinct_2"], metrics["win_rate"],
                f", KL overhead {metrics['kl_overhead_text']}, share of the ceiling's gain "
                f"{metrics['ceiling_gain_share_text']}" if "ceiling" in metrics else "")


def _write_results(out: Path, config: MetricsConfig, metrics: dict[str, Any], reference_rows: list[dict[str, Any]],
                   policy_rows: list[dict[str, Any]], optimum, best_of_n, trained_dir: Path) -> None:
    """samples.jsonl, the plots, metrics.json and the resolved config into `out`."""
    by_model = {"reference": reference_rows, "policy": policy_rows}
    files.write_jsonl(out / layout.SAMPLES,
                      ({"model": name, **row} for name, rows in by_model.items() for row in rows))
    rewards = {name: [r["reward"] for r in rows] for name, rows in by_model.items()}
    plots.reward_histogram(rewards["reference"], rewards["policy"], config.name, out / "reward_hist.png")
    if "p_positive" in policy_rows[0]:  # a classifier reward's probability
        p_positive = {name: [r["p_positive"] for r in rows] for name, rows in by_model.items()}
        plots.reward_histogram(p_positive["reference"], p_positive["policy"], config.name,
                               out / "p_positive_hist.png", xlabel="p(positive)")
    plots.diversity_bars(metrics["reference"], metrics["policy"], config.name, out / "diversity.png")
    if optimum is not None:
        plots.ceiling_frontier({config.name: (metrics["kl"], metrics["policy"]["reward_mean"])},
                               metrics["reference"]["reward_mean"], optimum, best_of_n, out / layout.FRONTIER_PLOT)
    log_file = trained_dir / "training_log.json"
    if log_file.exists():
        plots.training_curves(json.loads(log_file.read_text()), config.name, out / "training.png")
    files.write_yaml(out / layout.METRICS_CONFIG, config_to_dict(config) | {"provenance": metrics["provenance"] | {
        "policy_weights_sha256": (files.sha256_of(trained_dir / "model.safetensors")
                                  if (trained_dir / "model.safetensors").exists() else None),
        **files.computed_by()}})
    files.write_json(out / layout.METRICS, metrics)
