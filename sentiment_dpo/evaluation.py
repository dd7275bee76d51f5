"""Stage 4: reference vs trained policy on held-out prompts: reward, KL, diversity, win rate; JSON and PNGs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from . import io, plots
from .config import MetricsConfig, config_to_dict
from .distributed import is_main_process
from .errors import PipelineError
from .generation import completion_logprobs, sample_completions
from .metrics import kl_estimate, per_prompt_means, summarize, win_rate
from .models import load_policy, load_reward, positive_label_index, resolve_device
from .prompts import choose_prompts
from .sample_and_score import sampling_settings
from .scoring import score_texts

logger = logging.getLogger(__name__)


def run(config: MetricsConfig) -> dict[str, Any]:
    """Write results/LOSS/metrics.json, samples.jsonl, plots and resolved config; return the metrics."""
    from .training import check_loss

    check_loss(config.loss)
    run_dir = Path(config.run_dir)
    generation = io.read_yaml(run_dir / io.GENERATION_CONFIG, "python3 text_generation.py")
    trained_dir = run_dir / io.model_dir(config.loss)
    if not (trained_dir / "config.json").exists():
        raise PipelineError(f"{trained_dir} holds no trained model; run `python3 main.py {config.loss}` first")
    device = resolve_device(config.device)
    reference = load_policy(generation["policy"], device)
    policy = load_policy(str(trained_dir), device)
    reward = load_reward(generation["reward"], device)
    positive = positive_label_index(reward.model.config.id2label, generation.get("positive_label"))
    prompts = choose_prompts(generation["prompt_mode"], "heldout", config.num_prompts, generation["prompt_words"],
                             config.seed)
    max_new_tokens, temperature = generation["max_new_tokens"], generation["temperature"]

    samples, rewards, p_positive = {}, {}, {}
    for name, model in (("reference", reference), ("policy", policy)):
        samples[name] = sample_completions(model.model, model.tokenizer, prompts, config.samples_per_prompt,
                                           max_new_tokens, temperature, config.batch_size, config.seed,
                                           desc=f"sampling {name}")
        rewards[name], p_positive[name] = score_texts(reward.model, reward.tokenizer,
                                                      [s.prompt + s.completion for s in samples[name]], positive,
                                                      config.batch_size, desc=f"scoring {name}")
    # KL(policy || reference) from the policy's own samples, scored by both models.
    policy_logps = completion_logprobs(policy.model, policy.tokenizer, samples["policy"], config.batch_size)
    reference_logps = completion_logprobs(reference.model, reference.tokenizer, samples["policy"], config.batch_size)

    prompt_index = {name: [s.prompt_index for s in samples[name]] for name in samples}
    metrics = {
        "loss": config.loss,
        "reference": summarize([s.completion for s in samples["reference"]], rewards["reference"],
                               p_positive["reference"]),
        "policy": summarize([s.completion for s in samples["policy"]], rewards["policy"], p_positive["policy"]),
        "kl": kl_estimate(policy_logps, reference_logps),
        "win_rate": win_rate(per_prompt_means(prompt_index["policy"], rewards["policy"]),
                             per_prompt_means(prompt_index["reference"], rewards["reference"])),
        "num_prompts": len(prompts),
        "provenance": {
            "reference_policy": generation["policy"], "policy": str(io.model_dir(config.loss)),
            "reward_model": generation["reward"], "prompts": f"held-out {generation['prompt_mode']} prompts",
            "sampling": sampling_settings(max_new_tokens, temperature), "seed": config.seed,
        },
    }
    metrics["p_positive_delta"] = metrics["policy"]["p_positive_mean"] - metrics["reference"]["p_positive_mean"]
    if not is_main_process():  # every process holds all samples; one writes the results
        return metrics

    out = run_dir / io.results_dir(config.loss)
    io.write_jsonl(out / "samples.jsonl", (
        {"model": name, "prompt": s.prompt, "completion": s.completion, "reward": r, "p_positive": p,
         "prompt_index": s.prompt_index}
        for name in samples for s, r, p in zip(samples[name], rewards[name], p_positive[name])))
    plots.reward_histogram(rewards["reference"], rewards["policy"], config.loss, out / "reward_hist.png")
    plots.reward_histogram(p_positive["reference"], p_positive["policy"], config.loss, out / "p_positive_hist.png",
                           xlabel="p(positive)")
    plots.diversity_bars(metrics["reference"], metrics["policy"], config.loss, out / "diversity.png")
    log_file = trained_dir / "training_log.json"
    if log_file.exists():
        plots.training_curves(json.loads(log_file.read_text()), config.loss, out / "training.png")
    io.write_yaml(out / "metrics.config.yaml", config_to_dict(config))
    io.write_json(out / "metrics.json", metrics)
    logger.info("%s: p_positive %.3f -> %.3f, KL %.2f nats, distinct-2 %.3f -> %.3f, win rate %.2f", config.loss,
                metrics["reference"]["p_positive_mean"], metrics["policy"]["p_positive_mean"], metrics["kl"],
                metrics["reference"]["distinct_2"], metrics["policy"]["distinct_2"], metrics["win_rate"])
    return metrics
