"""Scoring texts with the sentiment classifier: the reward is the positive class's logit."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .distributed import map_batches


@torch.inference_mode()
def score_texts(model, tokenizer, texts: list[str], positive_index: int, batch_size: int,
                max_length: int = 512, desc: str = "scoring") -> tuple[list[float], list[float]]:
    """Return (positive-class logit, positive-class probability) for each text, in input order.

    Texts are scored in batches sorted by length, so little compute goes to padding.
    """
    device = next(model.parameters()).device
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    progress = tqdm(total=len(batches), desc=desc, unit="batch")

    def score(_: int, batch: list[int]) -> tuple[list[float], list[float]]:
        enc = tokenizer([texts[i] for i in batch], truncation=True, max_length=limit, padding=True,
                        return_tensors="pt").to(device)
        logits = model(**enc).logits.float()  # (B, num_labels)
        probs = torch.softmax(logits, dim=-1)
        progress.update()
        return logits[:, positive_index].tolist(), probs[:, positive_index].tolist()

    logits_out = [0.0] * len(texts)
    probs_out = [0.0] * len(texts)
    for batch, (batch_logits, batch_probs) in zip(batches, map_batches(batches, score)):
        for i, logit, prob in zip(batch, batch_logits, batch_probs):
            logits_out[i] = logit
            probs_out[i] = prob
    progress.close()
    return logits_out, probs_out
