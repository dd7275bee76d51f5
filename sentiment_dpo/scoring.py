"""Scoring texts: with a sentiment classifier (the reward is the positive class's logit, its probability
p_positive) or with a user's function from a file, `FILE.py:FUNCTION`, which gives one number per text and no
probability (docs/methods.md#your-own-reward)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from .distributed import map_length_sorted
from .errors import PipelineError
from .user_code import UserFunction, first_line, load_function

EXAMPLE = "my_rewards.py:count_good_words"
SIGNATURE = "def FUNCTION(texts: list[str]) -> list[float]"
# what a loaded function is checked on before any long work
SAMPLE_TEXTS = ["A wonderful film, I loved every minute.", "Dull and far too long.", ""]


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


class Scorer(Protocol):
    """The reward or the judge: a `Classifier` or a `RewardFunction`."""

    positive: int | None  # the classifier's positive class; None for a function
    gives_probability: bool  # whether `score` returns p_positive beside the reward

    @property
    def spec(self) -> str: ...  # what the user named

    @property
    def source(self) -> str: ...  # where it was loaded from

    def score(self, texts: list[str], batch_size: int, desc: str = "scoring",
              across_processes: bool = True) -> tuple[list[float], list[float] | None]: ...


@dataclass
class Classifier:
    """A loaded sentiment classifier (`models.LoadedModel`) and the index of its positive class."""

    model: Any
    positive: int
    gives_probability = True

    @property
    def spec(self) -> str:
        return self.model.spec

    @property
    def source(self) -> str:
        return self.model.source

    def score(self, texts: list[str], batch_size: int, desc: str = "scoring",
              across_processes: bool = True) -> tuple[list[float], list[float]]:
        """(positive-class logit, positive-class probability) per text."""
        return score_texts(self.model.model, self.model.tokenizer, texts, self.positive, batch_size, desc=desc,
                           across_processes=across_processes)


@dataclass(frozen=True)
class RewardFunction:
    """A user's reward (or judge) function: one number per text, no probability. `positive` is None (no class)."""

    user: UserFunction
    positive = None
    gives_probability = False

    @property
    def spec(self) -> str:
        return self.user.spec

    @property
    def source(self) -> str:
        return str(self.user.path)

    @property
    def sha256(self) -> str:
        return self.user.sha256

    def score(self, texts: list[str], batch_size: int, desc: str = "scoring",
              across_processes: bool = True) -> tuple[list[float], None]:
        """(the function's value, None) per text, called in batches of `batch_size` texts."""
        progress = tqdm(total=-(-len(texts) // batch_size), desc=desc, unit="batch")

        def score(_: int, batch: list[int]) -> list[float]:
            values = self([texts[i] for i in batch])
            progress.update()
            return values

        values = map_length_sorted([len(text) for text in texts], batch_size, score, across_processes)
        progress.close()
        return values, None

    def __call__(self, texts: list[str]) -> list[float]:
        """The function on `texts`, checked: one finite number per text, or a one-line error."""
        spec = self.spec
        try:
            values = self.user.function(texts)
        except Exception as err:  # the user's code
            raise PipelineError(f"{spec} raised {type(err).__name__}: {first_line(err)}; fix the function (it is "
                                f"called as `{SIGNATURE}` with a batch of texts)") from None
        if hasattr(values, "tolist"):  # a tensor or an array of numbers
            values = values.tolist()
        if not isinstance(values, (list, tuple)) or len(values) != len(texts):
            count = f"{len(values)} values" if isinstance(values, (list, tuple)) else f"a {type(values).__name__}"
            raise PipelineError(f"{spec} returned {count} for {len(texts)} texts; return a list of one float per "
                                "text, in the order given")
        for text, value in zip(texts, values):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise PipelineError(f"{spec} returned {value!r} ({type(value).__name__}) for the text {text[:40]!r}; "
                                    "return a float for every text")
            if not math.isfinite(value):
                raise PipelineError(f"{spec} returned {value} for the text {text[:40]!r}; return a finite number "
                                    "for every text")
        return [float(value) for value in values]


def function_records(**scorers: Scorer | None) -> dict[str, dict[str, str]]:
    """Provenance of each scorer that is a user's function (`NAME_function`: file, function, SHA-256); a
    classifier's weights are in the caches' keys instead."""
    return {f"{name}_function": scorer.user.record() for name, scorer in scorers.items()
            if isinstance(scorer, RewardFunction)}


def load_reward_function(spec: str) -> RewardFunction:
    """Import `FILE.py:FUNCTION` and check it on a few sample texts before any long work; one-line errors."""
    reward = RewardFunction(load_function(spec, EXAMPLE))
    reward(SAMPLE_TEXTS)
    return reward
