"""Online RL baselines through TRL: RLOO, GRPO and online DPO, rewarded by the project's sentiment classifier.

Each samples completions of the training prompts from the current policy during training (pure sampling,
the same `max_new_tokens` as stage 1) and scores them with `OnlineReward`, a plain callable: TRL's own
loading of a classifier takes `logits[:, 0]` whatever the positive class is, and tokenizes without special
tokens. The KL coefficient is the run's β for all three (GRPO's default is 0: no reference at all).

- `rloo` (Ahmadian et al. 2024): REINFORCE with the leave-one-out mean of the other samples of the same prompt
  as baseline; TRL subtracts β·KL(sequence) from each reward, i.e. it optimises the KL-regularised objective.
- `grpo` (Shao et al. 2024): advantages standardised within each prompt's group, a KL(π‖π_ref) term of
  weight β in the loss (TRL's defaults otherwise: `dapo` token aggregation, clipping 0.2).
- `online_dpo` (Guo et al. 2024): two samples per prompt, the higher-reward one chosen, the DPO loss on them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError
from ..generation import ANCESTRAL, OWN_DISTRIBUTION_TEMPERATURE
from ..models import prompt_text
from ..scoring import Scorer
from .trainer_args import lora_config, shared_trainer_args

if TYPE_CHECKING:  # methods/ read the config's values, and never import it at run time (config imports the registry)
    from ..config import TrainingConfig

class OnlineReward:
    """TRL reward function: the reward of prompt + completion as stage 1 scores it (a classifier's positive-class
    logit, or a reward function's value).

    TRL hands over the prompt as the trainer saw it (with the policy's BOS text in front): that prefix is removed,
    so the classifier reads exactly the text it reads everywhere else.
    """

    __name__ = "sentiment_reward"  # TRL logs each reward function under its name

    def __init__(self, classifier: Scorer, batch_size: int, prompt_prefix: str = ""):
        self.classifier, self.batch_size, self.prompt_prefix = classifier, batch_size, prompt_prefix

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        texts = [p.removeprefix(self.prompt_prefix) + c for p, c in zip(prompts, completions)]
        # each process scores its own completions: no sharing across processes inside TRL's step
        return self.classifier.score(texts, self.batch_size, desc="online rewards", across_processes=False)[0]


def prompts_dataset(prompts: list[str], tokenizer) -> Any:
    """The training prompts as TRL's prompt-only dataset (each prompt starts with the policy's BOS text)."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": prompt_text(tokenizer, p)} for p in prompts])


# The policy's own distribution, as everywhere a KL is optimised (TRL's online DPO defaults to temperature 0.9).
PURE_SAMPLING = {"temperature": OWN_DISTRIBUTION_TEMPERATURE, "top_p": ANCESTRAL["top_p"], "top_k": ANCESTRAL["top_k"]}


def online_config(config: TrainingConfig, common: dict[str, Any], max_new_tokens: int):
    """The TRL config of `config.loss`; `common` holds the arguments every trainer shares (`shared_trainer_args`)."""
    if config.loss == "rloo":
        from trl import RLOOConfig

        return RLOOConfig(**common, **PURE_SAMPLING, num_generations=config.num_generations,
                          max_completion_length=max_new_tokens)
    if config.loss == "grpo":
        from trl import GRPOConfig

        return GRPOConfig(**common, **PURE_SAMPLING, num_generations=config.num_generations,
                          max_completion_length=max_new_tokens)
    from trl.experimental.online_dpo import OnlineDPOConfig

    return OnlineDPOConfig(**(common | {"beta": [config.beta]}), **PURE_SAMPLING, max_new_tokens=max_new_tokens)


def build_trainer(model, tokenizer, dataset, config: TrainingConfig, output_dir: Path, use_cpu: bool,
                  callbacks: list | None, reward: OnlineReward, max_new_tokens: int) -> Any:
    """Config -> the TRL trainer of `config.loss` (one of ONLINE_METHODS) on an in-memory model, sampling
    `max_new_tokens` per completion of the `dataset`'s prompts and rewarded by `reward`."""
    peft_config = lora_config(config)
    with warnings.catch_warnings():
        # online DPO lives in trl.experimental: its import warning is expected
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        args = online_config(config, shared_trainer_args(config, output_dir, use_cpu), max_new_tokens)
        if config.loss == "rloo":
            from trl import RLOOTrainer as Trainer
        elif config.loss == "grpo":
            from trl import GRPOTrainer as Trainer
        else:
            from trl.experimental.online_dpo import OnlineDPOTrainer as Trainer
        return Trainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                       processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)


def training_prompts(generations: list[dict[str, Any]]) -> list[str]:
    """The distinct prompts of stage 1's samples, in their order: the prompts the offline pairs came from."""
    return list(dict.fromkeys(row["prompt"] for row in generations))


def check_batch(config: TrainingConfig) -> None:
    """RLOO and GRPO group each step's completions by prompt: the batch must hold whole groups."""
    if config.loss in ("rloo", "grpo") and config.batch_size % config.num_generations:
        raise PipelineError(f"--batch-size {config.batch_size} must be a multiple of --num-generations "
                            f"{config.num_generations} for {config.loss}; use --batch-size "
                            f"{config.num_generations * max(1, config.batch_size // config.num_generations)}")

