"""Train the embedded default policy: a small GPT-2 with its own byte-level BPE, on the review corpus.

The 50k-word output layer of the real GPT-2 tokenizer dominated the cost of a model this small, so the
policy gets a compact tokenizer learned on the training reviews. The result is a
`GPT2LMHeadModel.save_pretrained` folder with its tokenizer, loadable by `AutoModelForCausalLM`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

EOS = "<|endoftext|>"


@dataclass
class PolicyPretrainingConfig:
    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    context: int = 128
    batch_size: int = 32
    learning_rate: float = 1.5e-3
    warmup_steps: int = 100
    max_steps: int = 2400  # about 8 passes over the 1.2M training tokens, 30 min on 2 cores
    seed: int = 0


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE (GPT-2's scheme, smaller vocabulary), wrapped as a `GPT2TokenizerFast` with no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    # A prefix space makes a sentence-initial word the same token as mid-text, so a prompt taken from the
    # start of a sentence tokenizes the way the model saw it in training.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, add_prefix_space=True)


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """All documents as one 1-D token tensor, each followed by EOS (GPT-2's pre-training layout)."""
    ids: list[int] = []
    for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def random_windows(stream: torch.Tensor, batch_size: int, context: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(stream) - context, (batch_size,), generator=generator)
    return torch.stack([stream[s : s + context] for s in starts.tolist()])  # (B, T)


@torch.inference_mode()
def perplexity(model, stream: torch.Tensor, context: int, batch_size: int = 32) -> float:
    """Held-out perplexity over non-overlapping windows of the stream."""
    model.eval()
    usable = (len(stream) // context) * context
    windows = stream[:usable].view(-1, context)
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i : i + batch_size]
        loss = model(input_ids=batch, labels=batch).loss
        total += loss.item() * batch.numel()
        count += batch.numel()
    return math.exp(total / count)


def pretrain_policy(train_texts: list[str], heldout_texts: list[str], out_dir: Path,
                    config: PolicyPretrainingConfig) -> dict:
    """Train tokenizer and model, save both to `out_dir`, and return quality numbers."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(config.seed)
    tokenizer = train_tokenizer(train_texts, config.vocab_size)
    train_stream = token_stream(tokenizer, train_texts)
    heldout_stream = token_stream(tokenizer, heldout_texts)
    logger.info("policy corpus: %d train tokens, %d held-out tokens", len(train_stream), len(heldout_stream))
    model_config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.context, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.1, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    generator = torch.Generator().manual_seed(config.seed)
    start = time.time()
    model.train()
    progress = tqdm(range(config.max_steps), desc="pre-training policy")
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        batch = random_windows(train_stream, config.batch_size, config.context, generator)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.time() - start
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    save_compact(model, tokenizer, out_dir)
    # Quality is measured on what was saved (fp16-rounded weights), not on the in-memory model.
    heldout_ppl = perplexity(GPT2LMHeadModel.from_pretrained(out_dir), heldout_stream, config.context)
    passes = config.max_steps * config.batch_size * config.context / len(train_stream)
    quality = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "heldout_perplexity": heldout_ppl,
        "passes_over_corpus": passes,
        "train_tokens": len(train_stream),
        "train_seconds": train_seconds,
        "config": asdict(config),
    }
    logger.info("policy: held-out perplexity %.1f after %.1f passes", heldout_ppl, passes)
    return quality


def save_compact(model, tokenizer, out_dir: Path) -> None:
    """Save weights in fp16 (half the bytes in git) but declare fp32, so `from_pretrained` computes in fp32."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out_dir)
    model.to(torch.float32)
    config_file = out_dir / "config.json"
    config = json.loads(config_file.read_text())
    config["dtype"] = "float32"
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(out_dir)
