"""Sampling completions from a causal LM, and the log-probabilities of sampled completions.

Pure ancestral sampling (no top-k / top-p) by default: the samples then come from the policy's own
distribution, which is what makes the sequence-level KL estimate in `metrics.kl_estimate` unbiased.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .distributed import map_batches, map_length_sorted
from .models import prompt_ids

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    prompt_index: int
    prompt: str
    completion: str
    completion_ids: list[int]  # sampled tokens, up to and including EOS if one was sampled


def _no_padding_warning(record: logging.LogRecord) -> bool:
    """A filter for transformers' warning that a forward pass got padding and no attention mask: `generate` raises it
    itself, in the decoding step after a row ended with EOS (GPT-2's pad token), though we pass the mask. Nothing a
    user can act on."""
    return "attention_mask" not in record.getMessage()


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


def _trim_after_eos(tokens: list[int], eos_id: int | None) -> list[int]:
    if eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1]
    return tokens


# Every sample in the project is drawn ancestrally: nothing but the temperature reshapes the model's distribution.
ANCESTRAL = {"do_sample": True, "top_k": 0, "top_p": 1.0}
# Where a KL to the reference is estimated or optimised (stage 4, a sweep's checkpoints, the ceiling, online RL),
# the samples are the policy's own distribution: at another temperature the KL estimate (the mean log-ratio of the
# samples) would be the KL of a distribution nothing was sampled from. Only stage 1's training data takes
# --temperature.
OWN_DISTRIBUTION_TEMPERATURE = 1.0


def sampling_record(max_new_tokens: int, temperature: float) -> dict[str, Any]:
    """The sampling settings a provenance record names (the full config is `pure_sampling_config`)."""
    return {**ANCESTRAL, "temperature": temperature, "max_new_tokens": max_new_tokens, "min_new_tokens": 0,
            "repetition_penalty": 1.0, "model_generation_config": "ignored"}


def pure_sampling_config(tokenizer, max_new_tokens: int, temperature: float):
    """The one generation config every sample is drawn with: ancestral sampling from the model's distribution
    (at `temperature`), nothing else. Every field that could reshape the distribution is set explicitly, because
    `generate` fills the unset ones from the model's own `generation_config` (a hub model's repetition penalty or
    top-k would otherwise apply silently). EOS may come at any step, the first included."""
    from transformers import GenerationConfig

    return GenerationConfig(
        **ANCESTRAL, temperature=temperature, min_p=None, typical_p=1.0, epsilon_cutoff=0.0,
        eta_cutoff=0.0, repetition_penalty=1.0, encoder_repetition_penalty=1.0, no_repeat_ngram_size=0,
        bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None, forced_bos_token_id=None,
        forced_eos_token_id=None, min_length=0, min_new_tokens=None, max_new_tokens=max_new_tokens, num_beams=1,
        renormalize_logits=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


@torch.inference_mode()
def sample_completions(model, tokenizer, prompts: list[str], samples_per_prompt: int, max_new_tokens: int,
                       temperature: float, batch_size: int, seed: int, desc: str = "sampling") -> list[Sample]:
    """Draw `samples_per_prompt` completions for each prompt; rows come back in (prompt, sample) order.

    Prompts are bucketed by token length (less padding) and left-padded; generation uses the KV cache.
    """
    device = next(model.parameters()).device
    prompt_tokens = [prompt_ids(tokenizer, prompt) for prompt in prompts]  # once per prompt, not once per sample
    jobs = [(p, prompt_tokens[p]) for p in range(len(prompts)) for _ in range(samples_per_prompt)]
    order = sorted(range(len(jobs)), key=lambda j: (len(jobs[j][1]), j))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    # One seed per batch, drawn from the stage seed: reproducible for the same batch size, on any process.
    seed_stream = torch.Generator().manual_seed(seed)
    seeds = [int(torch.randint(0, 2**31 - 1, (1,), generator=seed_stream)) for _ in batches]
    eos_id = tokenizer.eos_token_id
    generation_config = pure_sampling_config(tokenizer, max_new_tokens, temperature)
    progress = tqdm(total=len(batches), desc=desc, unit="batch")

    def generate(index: int, batch: list[int]) -> list[list[int]]:
        ids, mask = _left_pad([jobs[j][1] for j in batch], tokenizer.pad_token_id)
        torch.manual_seed(seeds[index])
        output = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                generation_config=generation_config)
        progress.update()
        return [_trim_after_eos(tokens, eos_id) for tokens in output[:, ids.shape[1]:].tolist()]

    # `generate` fills unset fields from the model's own generation config: give it nothing to fill in
    own_config = model.generation_config
    model.generation_config = generation_config
    transformers_logger = logging.getLogger("transformers.modeling_utils")
    transformers_logger.addFilter(_no_padding_warning)
    try:
        batch_outputs = map_batches(batches, generate)
    finally:
        model.generation_config = own_config
        transformers_logger.removeFilter(_no_padding_warning)
    results: list[Sample | None] = [None] * len(jobs)
    for batch, completions in zip(batches, batch_outputs):
        for j, tokens in zip(batch, completions):
            prompt_index = jobs[j][0]
            results[j] = Sample(prompt_index, prompts[prompt_index],
                                tokenizer.decode(tokens, skip_special_tokens=True), tokens)
    progress.close()
    return [r for r in results if r is not None]


def _right_padded(sequences: list[list[int]], batch: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of the batch's sequences, right-padded: positions then match those of an unpadded pass."""
    width = max(len(sequences[i]) for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, i in enumerate(batch):
        ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
        mask[row, : len(sequences[i])] = 1
    return ids, mask


def _completion_sums(logits: torch.Tensor, ids: torch.Tensor, sequences: list[list[int]], starts: list[int],
                     batch: list[int]) -> list[float]:
    """Each row's log-prob of its completion from the batch's logits (B, T, V): token t is predicted at t − 1."""
    logps = torch.log_softmax(logits.float()[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return [logps[row, starts[i] - 1 : len(sequences[i]) - 1].sum().item() for row, i in enumerate(batch)]


def _sequences(tokenizer, samples: list[Sample]) -> tuple[list[list[int]], list[int]]:
    """Each sample as BOS + prompt + completion ids, and where its completion starts."""
    contexts = [prompt_ids(tokenizer, s.prompt) for s in samples]
    return [context + s.completion_ids for context, s in zip(contexts, samples)], [len(c) for c in contexts]


@torch.inference_mode()
def completion_logprobs(model, tokenizer, samples: list[Sample], batch_size: int,
                        desc: str = "log-probs") -> list[float]:
    """log p(completion | BOS + prompt) under `model`, summed over the completion's tokens, per sample."""
    device = next(model.parameters()).device
    sequences, starts = _sequences(tokenizer, samples)
    progress = tqdm(total=-(-len(samples) // batch_size), desc=desc, unit="batch")

    def score(_: int, batch: list[int]) -> list[float]:
        ids, mask = (t.to(device) for t in _right_padded(sequences, batch, tokenizer.pad_token_id))
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        progress.update()
        return _completion_sums(logits, ids, sequences, starts, batch)

    out = map_length_sorted([len(s) for s in sequences], batch_size, score)
    progress.close()
    return out


@torch.inference_mode()
def completion_comparison(model, reference, tokenizer, samples: list[Sample], batch_size: int,
                          desc: str = "log-probs and token KLs") -> tuple[list[float], list[float], list[float]]:
    """For each sample y of `model`, from one pass of each model: log π(y|x), log π_ref(y|x) (as
    `completion_logprobs`), and Σ_t KL(π(·|x, y<t) ‖ π_ref(·|x, y<t)) over its completion positions, the exact KL of
    the two next-token distributions summed along the sampled prefix (the completion's EOS step included). The mean
    of the last over the policy's own samples is the Rao-Blackwellised estimate of the sequence KL (Amini et al.
    2025): unbiased like the mean log-ratio, with a variance no larger. `reference` shares `model`'s tokenizer."""
    device = next(model.parameters()).device
    sequences, starts = _sequences(tokenizer, samples)
    progress = tqdm(total=-(-len(samples) // batch_size), desc=desc, unit="batch")

    def score(_: int, batch: list[int]) -> list[tuple[float, float, float]]:
        ids, mask = (t.to(device) for t in _right_padded(sequences, batch, tokenizer.pad_token_id))
        policy_logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        reference_logits = reference(input_ids=ids, attention_mask=mask).logits
        token_kls = []
        for row, i in enumerate(batch):
            positions = slice(starts[i] - 1, len(sequences[i]) - 1)  # the steps that sampled a completion token
            log_p = torch.log_softmax(policy_logits[row, positions].float(), dim=-1)  # (tokens, V)
            log_q = torch.log_softmax(reference_logits[row, positions].float(), dim=-1)
            token_kls.append((log_p.exp() * (log_p - log_q)).sum().item())
        progress.update()
        return list(zip(_completion_sums(policy_logits, ids, sequences, starts, batch),
                        _completion_sums(reference_logits, ids, sequences, starts, batch), token_kls))

    rows = map_length_sorted([len(s) for s in sequences], batch_size, score)
    progress.close()
    policy_logps, reference_logps, token_kls = (list(column) for column in zip(*rows)) if rows else ([], [], [])
    return policy_logps, reference_logps, token_kls
