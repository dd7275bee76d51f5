"""Stage 1: sample reviews from the starting policy and score each with the sentiment classifier."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import files, layout
from ..cache_keys import cache_key
from ..config import GenerationConfig, config_to_dict
from ..embedded.corpus import cache_dir, cache_notation
from ..distributed import is_main_process
from ..errors import PipelineError
from ..generation import sample_completions, sampling_record
from ..models import (LoadedModel, content_digest, context_limit, load_policy, load_scorer, prompt_ids, resolve_device,
                      scorer_digest)
from ..prompt_source import absolute_source
from ..prompts import PromptSettings, choose_prompts, prompt_pools, prompts_digest, prompts_needed
from ..scoring import Scorer, function_records
from ..user_code import absolute_spec

logger = logging.getLogger(__name__)


def sample_and_score(policy: LoadedModel, reward: Scorer, prompts: list[str], samples_per_prompt: int,
                     max_new_tokens: int, temperature: float, batch_size: int, seed: int,
                     desc: str = "sampling") -> list[dict[str, Any]]:
    """Rows of prompt, completion, reward, p_positive (None where the reward is a function) and provenance, in
    (prompt, sample) order."""
    samples = sample_completions(policy.model, policy.tokenizer, prompts, samples_per_prompt, max_new_tokens,
                                 temperature, batch_size, seed, desc=desc)
    rewards, p_positive = reward.score([s.prompt + s.completion for s in samples], batch_size)
    settings = sampling_record(max_new_tokens, temperature)
    rows = []
    p_positive = p_positive or [None] * len(samples)
    for k, (sample, r, p) in enumerate(zip(samples, rewards, p_positive)):
        rows.append({
            "prompt": sample.prompt, "completion": sample.completion, "completion_ids": sample.completion_ids,
            "reward": r, "p_positive": p,
            "prompt_index": sample.prompt_index, "sample_index": k % samples_per_prompt,
            "policy": policy.spec, "reward_model": reward.spec, "seed": seed, "sampling": settings,
        })
    return rows


def generations_key(config: GenerationConfig, policy: LoadedModel, reward: Scorer, prompts: list[str]) -> str:
    """What stage 1's rows depend on, by content (the weights, the prompts themselves, the sampling settings; the
    key adds the libraries and kernels that compute them) and by name (the rows carry the names): the rows' cache
    entry, shared by every run directory."""
    keyed = {"policy": policy.spec, "reward": reward.spec, "policy_sha256": content_digest(policy),
             "reward_sha256": scorer_digest(reward), "positive_index": reward.positive,
             "prompts_sha256": prompts_digest(prompts),
             **{name: getattr(config, name) for name in ("num_samples", "samples_per_prompt", "max_new_tokens",
                                                         "temperature", "batch_size", "seed")}}
    return cache_key("generations", keyed)


def check_context_fits(policy: LoadedModel, prompts: list[str], max_new_tokens: int) -> None:
    """Fail before sampling if prompt + completion would run past the model's position embeddings."""
    limit = context_limit(policy.model)
    longest = max(len(prompt_ids(policy.tokenizer, p)) for p in prompts) + max_new_tokens
    if limit is not None and longest > limit:
        fits = max_new_tokens - (longest - limit)
        fix = (f"lower --max-new-tokens to {fits} or use shorter prompts" if fits > 0 else
               f"the prompts alone take {longest - max_new_tokens} tokens: use fewer --prompt-words")
        raise PipelineError(f"prompt + --max-new-tokens reaches {longest} tokens but {policy.spec} handles {limit}; "
                            + fix)


def policy_prompt_pools(generation: dict[str, Any], policy: LoadedModel, max_new_tokens: int):
    """The prompt pools of stage 1's recorded settings, made with the policy's tokenizer and leaving room in its
    context for `max_new_tokens`."""
    limit = context_limit(policy.model)
    return prompt_pools(PromptSettings.from_generation(generation), policy.tokenizer,
                        None if limit is None else limit - max_new_tokens)


def run(config: GenerationConfig) -> list[dict[str, Any]]:
    """Write data/generations.jsonl and its resolved config under the run dir; return the rows."""
    run_dir = Path(config.run_dir)
    config.prompts = absolute_source(config.prompts)
    config.reward = absolute_spec(config.reward)  # stages 3 and 4 load the recorded reward
    device = resolve_device(config.device)
    policy = load_policy(config.policy, device)
    if config.prompt_mode == "bos" and policy.tokenizer.bos_token_id is None:
        raise PipelineError("--prompt-mode bos needs a tokenizer with a BOS token; use --prompt-mode review")
    pools = policy_prompt_pools(config_to_dict(config), policy, config.max_new_tokens)
    prompts = choose_prompts(pools, "train", prompts_needed(config.num_samples, config.samples_per_prompt),
                             config.seed)
    check_context_fits(policy, prompts, config.max_new_tokens)
    reward = load_scorer(config.reward, device, positive_label=config.positive_label)
    key = generations_key(config, policy, reward, prompts)
    cached = cache_dir() / "generations" / key / Path(layout.GENERATIONS).name
    if cached.exists():
        logger.info("the %d scored samples come from the cache (%s): same policy, reward, prompts and sampling, by "
                    "content", config.num_samples, cached.parent)
        rows = files.read_jsonl(cached, ("prompt", "completion", "reward"), "python3 text_generation.py")
    else:
        logger.info("sampling %d texts from %s (%d prompts x %d), scoring with %s", config.num_samples,
                    policy.source, len(prompts), config.samples_per_prompt, reward.source)
        rows = sample_and_score(policy, reward, prompts, config.samples_per_prompt, config.max_new_tokens,
                                config.temperature, config.batch_size, config.seed)[: config.num_samples]
    if not is_main_process():  # every process holds all rows; one writes them
        return rows
    with files.build_lock(cached.parent):  # another run sharing the cache may be writing the same entry
        if not cached.exists():
            files.write_jsonl(cached, rows)
    resolved = config_to_dict(config) | {"provenance": {"policy_source": policy.source,
                                                        "reward_source": cache_notation(reward.source),
                                                        **function_records(reward=reward),
                                                        "prompts": pools.provenance, "generations_key": key,
                                                        **files.computed_by()}}
    files.write_jsonl(run_dir / layout.GENERATIONS, rows)
    files.write_yaml(run_dir / layout.GENERATION_CONFIG, resolved)
    logger.info("wrote %d rows to %s (mean reward %.3f)", len(rows), run_dir / layout.GENERATIONS,
                sum(r["reward"] for r in rows) / len(rows))
    return rows
