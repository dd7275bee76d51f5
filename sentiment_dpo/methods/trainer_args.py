"""What every method family's TRL trainer shares: its training arguments and LoRA adapters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import TrainingConfig


def shared_trainer_args(config: TrainingConfig, output_dir: Path, use_cpu: bool) -> dict[str, Any]:
    """Arguments shared by DPOConfig and the online methods' configs: fp32 on CPU, bf16 on GPUs that support it, no
    activation checkpointing, checkpoints only if asked for, no trackers."""
    import torch

    return dict(
        output_dir=str(output_dir),
        # sft reads no β (None): TRL's default then stands, unused
        **({} if config.beta is None else {"beta": config.beta}),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        # a pair method's batch of `batch_size` pairs in micro-batches whose gradients add up (the online methods
        # read no accumulation: None)
        per_device_train_batch_size=config.batch_size // (config.gradient_accumulation_steps or 1),
        gradient_accumulation_steps=config.gradient_accumulation_steps or 1,
        warmup_steps=config.warmup_ratio,  # transformers 5 reads a float < 1 as a share of the steps
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=use_cpu,
        # TRL turns bf16 on by default, which fails without a GPU
        bf16=not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        activation_checkpointing=False,  # recomputing activations only costs time on models this small
        # every trainable parameter takes part in each forward pass, so DDP need not search the graph for unused
        # ones after every step (transformers' default does, and warns that it found none)
        ddp_find_unused_parameters=False,
        logging_steps=10,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=2,
        report_to=config.report_to,
        disable_tqdm=False,
    )


def lora_config(config: TrainingConfig) -> Any:
    """peft's LoraConfig for `--lora-rank` > 0 (adapters on every linear layer but the LM head), else None."""
    if not config.lora_rank:
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
