"""Policies the benchmarks can run on: the project's specs plus a GPT-2-124M-sized random model."""

from __future__ import annotations

RANDOM_124M = "gpt2-124m-random"


def random_gpt2_124m():
    """A GPT-2-124M-sized model with random weights (the reference policy's cost, without the hub), seeded so
    that two loads give the same weights."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from sentiment_dpo.embedded import policy_path
    from sentiment_dpo.models import LoadedModel, prepare_tokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(policy_path())), "left")
    config = GPT2Config(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)  # 124M shape
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, RANDOM_124M, "random init")


def load_bench_policy(spec: str, device):
    from sentiment_dpo.models import load_policy

    return random_gpt2_124m() if spec == RANDOM_124M else load_policy(spec, device)
