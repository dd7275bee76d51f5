"""The pair methods' family: TRL's `DPOTrainer` loss types and SLiC-HF, trained on the preference pairs through
`fast_dpo`'s `DPOTrainer` subclass (the sampled tokens, prompt grouping, the cached reference pass)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .logit_bias import fold_logit_bias
from .own_loss import checked, load_own_loss
from .registry import SLIC, is_own_loss
from .trainer_args import lora_config, shared_trainer_args

if TYPE_CHECKING:
    from ..config import TrainingConfig


def dpo_config(config: TrainingConfig, output_dir: Path, use_cpu: bool):
    """TRL's DPOConfig for this run. SLiC-HF is DPOTrainer's "hinge" relu(1 - beta * (log-ratio(chosen) -
    log-ratio(rejected))) on reference log-probs of 0, i.e. margin 1/beta in the policy's own log-likelihood gap,
    plus `slic_lambda` times "sft", the mean NLL of the chosen tokens: CPOTrainer's hinge loss with cpo_alpha."""
    from trl import DPOConfig

    slic = config.loss == SLIC
    return DPOConfig(
        **shared_trainer_args(config, output_dir, use_cpu),
        # a loss from a file replaces TRL's loss types (`pair_loss`): "sigmoid" only fills the field
        loss_type=["hinge", "sft"] if slic else ["sigmoid"] if is_own_loss(config.loss) else [config.loss],
        loss_weights=[1.0, config.slic_lambda] if slic else None,
        label_smoothing=config.label_smoothing or 0.0,  # None: a loss type that does not read it
        max_length=None,  # generated texts are short: truncating them would only lose signal
        # slic has no reference: its zero log-probs are "precomputed" without a model pass or a reference copy
        precompute_ref_log_probs=bool(config.precompute_ref_log_probs) or slic,
        precompute_ref_batch_size=max(64, config.batch_size),
    )


def labels_pairs_softly(config: TrainingConfig) -> bool:
    """Whether the training's pairs carry the soft label: `--soft-labels`, or a loss file whose signature reads it."""
    return bool(config.soft_labels) or (is_own_loss(config.loss) and load_own_loss(config.loss).takes_soft_label)


def dpo_trainer(model, tokenizer, dataset, config: TrainingConfig, output_dir: Path, use_cpu: bool,
                callbacks: list | None = None, ref_model=None) -> Any:
    """The DPO trainer of `config` on `model` as it is (its trainable parameters chosen); a loss from a file
    (`own_loss`) is its `pair_loss`."""
    from .fast_dpo import dpo_trainer_class

    pair_loss = checked(load_own_loss(config.loss)) if is_own_loss(config.loss) else None
    return dpo_trainer_class()(model=model, ref_model=ref_model, args=dpo_config(config, output_dir, use_cpu),
                               train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(config),
                               callbacks=callbacks, group_by_prompt=config.group_by_prompt,
                               reference_free=config.loss == SLIC, pair_loss=pair_loss)


def build_trainer(model, tokenizer, dataset, config: TrainingConfig, output_dir: Path, use_cpu: bool,
                  callbacks: list | None = None, ref_model=None) -> Any:
    """Config -> trainer for a pair method training every weight (or LoRA adapters). A model still carrying an
    earlier round's logit bias (a sweep's later rounds) first takes it into its weights."""
    fold_logit_bias(model)
    return dpo_trainer(model, tokenizer, dataset, config, output_dir, use_cpu, callbacks, ref_model)
