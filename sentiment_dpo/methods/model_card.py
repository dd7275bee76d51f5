"""The model card (`README.md`) of a trained policy folder: what it was trained from and on, how, and how well."""

from __future__ import annotations

from typing import Any

from ..evaluation.metrics import JUDGE_COLUMNS, judge_metric
from .registry import BETA_FREE, ONLINE_METHODS, SLIC

CARD = "README.md"


def trained_parameters(training: dict[str, Any]) -> str:
    if training.get("logit_bias"):
        start = "the reward model's token scores" if training.get("bias_start") == "reward" else "zero"
        return f"a per-token logit bias started from {start} (the weights frozen; folded into an untied LM head)"
    if training["lora_rank"]:
        return f"LoRA adapters of rank {training['lora_rank']} (merged)"
    return "all weights"


def what_trains(training: dict[str, Any]) -> str:
    """One line: what trains, from where, on which labels, against which reference (a resolved training config)."""
    loss = training["loss"]
    if loss in ONLINE_METHODS:
        return (f"{trained_parameters(training)} of the starting policy, on its own samples of the training prompts "
                f"scored by the reward, KL coefficient β {training['beta']:g} to the frozen starting policy")
    labels = ("soft labels σ(r_chosen − r_rejected)" if training.get("soft_labels")
              else "hard chosen/rejected labels")
    reference = ("no reference model (slic)" if loss == SLIC else
                 "the chosen texts' NLL, no reference term (sft)" if loss in BETA_FREE else
                 f"β {training['beta']:g} against the frozen starting policy")
    recipe = training.get("recipe") or "standard"
    own = (training.get("provenance") or {}).get("own_loss")
    if own:
        labels = f"the loss `{own['function']}` of {own['copy']} (SHA-256 {own['sha256'][:16]}…, a copy in this folder)"
    return f"{trained_parameters(training)}, on {labels}, {reference} (recipe {recipe})"


def model_card(training: dict[str, Any], metrics: dict[str, Any] | None = None) -> str:
    """Markdown from the resolved training config (with its provenance block) and, once stage 4 ran, its metrics."""
    provenance = training.get("provenance", {})
    loss = training.get("method_name") or training["loss"]
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation",
        f"tags: [sentiment-dpo, trl, {loss}]", "---", "", f"# `{loss}` policy (sentiment-dpo)", "",
        (f"A per-token logit bias trained on top of `{provenance.get('reference_policy')}` (the network's weights "
         "unchanged; the bias is folded into an untied LM head)" if training.get("logit_bias") else
         f"Fine-tuned from `{provenance.get('reference_policy')}`")
        + f" toward positive movie reviews, with the sentiment classifier `{provenance.get('reward_model')}` as the "
        f"reward. Trained: {what_trains(training)}.", "",
        "| setting | value |", "|---|---|",
        f"| method | `{loss}`" + (f" (recipe `{training['recipe']}`)" if training.get("recipe") else "") + " |",
        f"| β | {'–' if training['beta'] is None else format(training['beta'], 'g')} |",
        f"| learning rate | {training['learning_rate']:g} |",
        f"| epochs / max steps | {training['epochs']:g} / {training['max_steps']} |",
        f"| batch size | {training['batch_size']} |",
        f"| trained parameters | {trained_parameters(training)} |",
        f"| data | `{provenance.get('data')}` (SHA-256 `{str(provenance.get('data_sha256'))[:16]}…`) |",
        f"| seed | {training['seed']} |", "",
        "Load it as any causal LM:", "", "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(PATH)", "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        "```", "",
        "The full resolved configuration is `training.config.yaml`, the training log `training_log.json`.", "",
    ]
    if metrics is None:
        lines.append("No evaluation yet: `python3 calculate_metrics.py " + loss + "` adds it here.")
    else:
        ref, pol = metrics["reference"], metrics["policy"]
        judge = judge_metric(pol)
        # p_positive: a classifier reward's probability (a reward function has none)
        columns = [("reward_mean", "reward", ".2f")] + [
            (key, label, ".3f") for key, label in (("p_positive_mean", "p_positive"),
                                                   (judge, JUDGE_COLUMNS.get((judge or "").removesuffix("_mean"))))
            if key in pol] + [("distinct_2", "distinct-2", ".3f")]
        lines += ["## Evaluation (held-out prompts, `calculate_metrics.py`)", "",
                  "| model |" + "".join(f" {label} |" for _, label, _ in columns),
                  "|---|" + "---|" * len(columns)]
        for name, m in (("reference", ref), ("this policy", pol)):
            lines.append(f"| {name} |" + "".join(f" {m[key]:{form}} |" for key, _, form in columns))
        lines += ["", f"KL to the reference: {metrics['kl']:.2f} nats; win rate {metrics['win_rate']:.2f}"
                  + (f"; KL overhead against the ceiling: {metrics['kl_overhead_text']}, share of the ceiling's "
                     f"reward gain at this KL: {metrics['ceiling_gain_share_text']}"
                     if "ceiling_gain_share_text" in metrics else "") + "."]
    return "\n".join(lines) + "\n"
