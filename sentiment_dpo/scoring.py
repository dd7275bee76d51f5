"""Scoring texts with the sentiment classifier: the reward is the positive class's logit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .distributed import map_length_sorted


@torch.inference_mode()
def score_texts(model, tokenizer, texts: list[str], positive_index: int, batch_size: int,
                max_length: int = 512, desc: str = "scoring",
                across_processes: bool = True) -> tuple[list[float], list[float]]:
    """Return (positive-class logit, positive-class probability) for each text, in input order.

    Texts are scored in batches sorted by length, so little compute goes to padding; the batches are shared
    across processes unless `across_processes` is False (each process scoring texts of its own).
    """
    device = next(model.parameters()).device
    limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    progress = tqdm(total=-(-len(texts) // batch_size), desc=desc, unit="batch")

    def score(_: int, batch: list[int]) -> list[tuple[float, float]]:
        enc = tokenizer([texts[i] for i in batch], truncation=True, max_length=limit, padding=True,
                        return_tensors="pt").to(device)
        logits = model(**enc).logits.float()  # (B, num_labels)
        probs = torch.softmax(logits, dim=-1)
        progress.update()
        return list(zip(logits[:, positive_index].tolist(), probs[:, positive_index].tolist()))

    results = map_length_sorted([len(text) for text in texts], batch_size, score, across_processes)
    progress.close()
    return [logit for logit, _ in results], [prob for _, prob in results]


@dataclass
class Classifier:
    """A loaded sentiment classifier (`models.LoadedModel`) and the index of its positive class."""

    model: Any
    positive: int

    def score(self, texts: list[str], batch_size: int, desc: str = "scoring",
              across_processes: bool = True) -> tuple[list[float], list[float]]:
        """(positive-class logit, positive-class probability) per text."""
        return score_texts(self.model.model, self.model.tokenizer, texts, self.positive, batch_size, desc=desc,
                           across_processes=across_processes)
