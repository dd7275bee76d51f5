"""The model card (`README.md`) of a trained policy folder: what it was trained from and on, how, and how well."""

from __future__ import annotations

from typing import Any

CARD = "README.md"


def trained_parameters(training: dict[str, Any]) -> str:
    if training.get("logit_bias"):
        start = "the reward model's token scores" if training.get("bias_start") == "reward" else "zero"
        return f"a per-token logit bias started from {start} (the weights frozen; folded into an untied LM head)"
    if training["lora_rank"]:
        return f"LoRA adapters of rank {training['lora_rank']} (merged)"
    return "all weights"


def model_card(training: dict[str, Any], metrics: dict[str, Any] | None = None) -> str:
    """Markdown from the resolved training config (with its provenance block) and, once stage 4 ran, its metrics."""
    provenance = training.get("provenance", {})
    loss = training["loss"]
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation",
        f"tags: [sentiment-dpo, trl, {loss}]", "---", "", f"# `{loss}` policy (sentiment-dpo)", "",
        f"Fine-tuned from `{provenance.get('reference_policy')}` toward positive movie reviews, with the sentiment "
        f"classifier `{provenance.get('reward_model')}` as the reward.", "",
        "| setting | value |", "|---|---|",
        f"| method | `{loss}` |", f"| β | {training['beta']:g} |", f"| learning rate | {training['learning_rate']:g} |",
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
        judge = "judge_p_positive_mean" in pol
        lines += ["## Evaluation (held-out prompts, `calculate_metrics.py`)", "",
                  "| model | reward | p_positive |" + (" judge p_positive |" if judge else "") + " distinct-2 |",
                  "|---|---|---|" + ("---|" if judge else "") + "---|"]
        for name, m in (("reference", ref), ("this policy", pol)):
            lines.append(f"| {name} | {m['reward_mean']:.2f} | {m['p_positive_mean']:.3f} |"
                         + (f" {m['judge_p_positive_mean']:.3f} |" if judge else "") + f" {m['distinct_2']:.3f} |")
        lines += ["", f"KL to the reference: {metrics['kl']:.2f} nats; win rate {metrics['win_rate']:.2f}"
                  + (f"; KL overhead against the ceiling: {metrics['kl_overhead_text']}, share of the ceiling's "
                     f"reward gain at this KL: {metrics['ceiling_gain_share_text']}"
                     if "ceiling_gain_share_text" in metrics else "") + "."]
    return "\n".join(lines) + "\n"
