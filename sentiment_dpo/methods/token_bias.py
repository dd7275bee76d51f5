"""The token-bias recipe's family (the project's own recipe): a pair method that trains a per-token logit bias,
started from the reward model's token scores (`bias_start`), on a frozen policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError
from ..user_code import is_function_spec
from .registry import TOKEN_BIAS
from .pair_methods import dpo_trainer

if TYPE_CHECKING:
    from ..config import TrainingConfig


def check_trained_parameters(model, config: TrainingConfig) -> None:
    """Refuse a logit bias on a model it cannot be folded into (no final LayerNorm with a bias, e.g. SmolLM2)."""
    from .logit_bias import supports_logit_bias

    if config.logit_bias and not supports_logit_bias(model):
        name = model.config.name_or_path or "this policy"
        what = "--recipe token-bias trains" if config.recipe == "token-bias" else "--logit-bias trains"
        raise PipelineError(f"{what} a per-token logit bias, which needs a final LayerNorm with a bias (GPT-2 style) "
                            f"to fold into; {name} has none: use --recipe standard (every weight) or --lora-rank R")


def choose_trained_parameters(model, config: TrainingConfig, initial_bias=None) -> None:
    """For the logit bias, freeze the weights and give the LM head the trainable bias, starting at `initial_bias`
    (None: zero). A model still training an earlier round's bias (a sweep's later rounds) first takes that bias
    into its weights: each round starts from the policy it reached."""
    from .logit_bias import add_logit_bias, fold_logit_bias

    fold_logit_bias(model)
    check_trained_parameters(model, config)
    if config.logit_bias:
        bias = add_logit_bias(model, model.config.name_or_path or "this policy")
        if initial_bias is not None:
            bias.start_from(initial_bias)


def starts_from_token_scores(config: TrainingConfig) -> bool:
    """Whether a (resolved) training's logit bias starts from the reward model's token scores."""
    return bool(config.logit_bias) and config.bias_start == "reward"


def check_reward(config: TrainingConfig, reward: str) -> None:
    """Refuse a start from the reward model's token scores when the reward is a function: only a classifier has
    them (the token-bias recipe's start)."""
    if starts_from_token_scores(config) and is_function_spec(reward):
        recipe = ", the token-bias recipe's" if config.recipe == TOKEN_BIAS else ""
        raise PipelineError(f"the logit bias's start (--bias-start reward{recipe}) scores each vocabulary token "
                            f"with the reward classifier, and the reward {reward} is a function: use --recipe "
                            "standard, or --bias-start zero")


def token_prior(policy, classifier, dataset, rows: list[dict[str, Any]], batch_size: int) -> Any:
    """The `bias_start.TokenPrior` (the reward model's token scores, scaled on the pairs: `dataset`'s token ids,
    `rows`' rewards) a logit bias starts from under `--bias-start reward`."""
    from .bias_start import fit_token_prior
    from .fast_dpo import token_columns

    vocab_size = policy.model.get_output_embeddings().weight.shape[0]
    _, chosen, rejected = token_columns(dataset)
    gaps = [row["chosen_reward"] - row["rejected_reward"] for row in rows]
    return fit_token_prior(policy.tokenizer, classifier, chosen, rejected, gaps, vocab_size, batch_size)


def build_trainer(model, tokenizer, dataset, config: TrainingConfig, output_dir: Path, use_cpu: bool,
                  callbacks: list | None = None, ref_model=None, initial_bias=None) -> Any:
    """Config -> trainer for a pair method training a logit bias that starts at `initial_bias` (None: zero)."""
    choose_trained_parameters(model, config, initial_bias)
    return dpo_trainer(model, tokenizer, dataset, config, output_dir, use_cpu, callbacks, ref_model)
