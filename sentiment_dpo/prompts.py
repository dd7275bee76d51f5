"""Making the prompts a stage samples from: training prompts for the preference data, held-out ones for metrics.

Prompts come from the built-in Pang & Lee reviews (the openings of their sentences) or from a user's source
(`prompt_source.py`); a record becomes a prompt by a rule: its first N words, its first K policy tokens with K
drawn per record (the DPO paper's IMDb prefixes), or the whole record. Every stage makes them from stage 1's
recorded settings, so the user names the source once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .embedded.corpus import MIN_SENTENCE_WORDS, load_corpus, review_prompts, review_sentences
from .errors import PipelineError
from .prompt_source import SourceSpec, load_records

logger = logging.getLogger(__name__)

CORPUS = "the built-in Pang & Lee reviews"
CORPUS_PROMPT_WORDS = 5


@dataclass(frozen=True)
class PromptSettings:
    """Stage 1's prompt options as recorded in data/generations.config.yaml (older records: the corpus)."""
    mode: str = "review"
    source: str | None = None
    column: str | None = None
    words: int | None = CORPUS_PROMPT_WORDS
    tokens: tuple[int, int] | None = None
    heldout_split: str | None = None
    heldout_fraction: float | None = None
    seed: int = 0  # stage 1's: draws the prefix lengths and the held-out share

    @classmethod
    def from_generation(cls, generation: Mapping[str, Any]) -> PromptSettings:
        tokens = generation.get("prompt_tokens")
        return cls(generation.get("prompt_mode", "review"), generation.get("prompts"),
                   generation.get("prompt_column"), generation.get("prompt_words"),
                   tuple(tokens) if tokens else None, generation.get("heldout_split"),
                   generation.get("heldout_fraction"), generation.get("seed", 0))

    @property
    def rule(self) -> str:
        if self.tokens is not None:
            return f"the first {self.tokens[0]}-{self.tokens[1]} policy tokens of each record (seeded)"
        return "each whole record" if self.words == 0 else f"the first {self.words} words of each record"


def describe(generation: Mapping[str, Any]) -> str:
    """Where a run's prompts came from, in words (SUMMARY.md)."""
    settings = PromptSettings.from_generation(generation)
    if settings.mode == "bos":
        return "the BOS token as the prompt"
    return f"prompts from {settings.source or CORPUS}, {settings.rule}"


@dataclass(frozen=True)
class Pools:
    """Every training prompt and every held-out prompt (none of them a training prompt), and their provenance."""
    train: list[str]
    heldout: list[str]
    provenance: dict[str, Any]


def prompt_pools(settings: PromptSettings, tokenizer: Any = None, max_prompt_tokens: int | None = None) -> Pools:
    """The two pools; `tokenizer` (the policy's) is needed by the token rule and, with `max_prompt_tokens`, drops
    prompts too long for the policy's context. Empty and over-long prompts are dropped and counted in the log.

    Stock phrases and reviewers' signatures recur across records, so the held-out pool leaves out every prompt that
    is also a training prompt: metrics never see a prompt that could have produced training pairs.
    """
    if settings.mode == "bos":
        return Pools([""], [""], {"source": "BOS token"})
    if settings.source is None:
        corpus = load_corpus()
        provenance = {"source": CORPUS, "kind": "corpus", "train_records": len(corpus.train_reviews),
                      "heldout_records": len(corpus.heldout_reviews),
                      "records_sha256": _digest([r.text for r in corpus.train_reviews + corpus.heldout_reviews])}
        if settings.tokens is None:  # the openings of each sentence, as the corpus has always given them
            train = review_prompts(corpus.train_reviews, settings.words)
            heldout = review_prompts(corpus.heldout_reviews, settings.words)
            if not train or not heldout:
                reviews = corpus.train_reviews if not train else corpus.heldout_reviews
                longest = max(len(s.split()) for s in review_sentences(reviews))
                fits = min(CORPUS_PROMPT_WORDS, longest - 1)
                raise PipelineError(f"--prompt-words {settings.words}: no {'training' if not train else 'held-out'} "
                                    f"sentence of {CORPUS} has more words (the longest has {longest}), so none "
                                    f"leaves words to continue; use --prompt-words {fits} or another number below "
                                    "the longest")
        else:
            train = _make(_long_sentences(corpus.train_reviews), settings, tokenizer, max_prompt_tokens, "training")
            heldout = _make(_long_sentences(corpus.heldout_reviews), settings, tokenizer, max_prompt_tokens,
                            "held-out")
    else:
        records = load_records(SourceSpec(settings.source, settings.column, settings.heldout_split,
                                          settings.heldout_fraction, settings.seed))
        provenance = dict(records.provenance)
        train = _make(records.train, settings, tokenizer, max_prompt_tokens, "training")
        heldout = _make(records.heldout, settings, tokenizer, max_prompt_tokens, "held-out")
        for part, prompts, texts in (("training", train, records.train), ("held-out", heldout, records.heldout)):
            if texts and not prompts:
                raise PipelineError(no_prompt_from(settings, part, texts))
    seen = set(train)
    heldout = [p for p in heldout if p not in seen]
    return Pools(train, heldout, provenance | {"rule": settings.rule})


def no_prompt_from(settings: PromptSettings, part: str, records: list[str | None]) -> str:
    """Why records of a --prompts source gave no prompt, and the fix that works (one line)."""
    source, column = f"--prompts {settings.source}", settings.column or "the text"
    if not any(isinstance(r, str) for r in records):
        return (f"{source}: {column} column holds no text in any {part} record (numbers or empty values); pass "
                "--prompt-column NAME of a column of text")
    if not any(isinstance(r, str) and r.strip() for r in records):
        return f"{source}: {column} column is empty in every {part} record; pass --prompt-column NAME of another column"
    return (f"{source}: every {part} prompt ({settings.rule}) is too long for the policy's context; use fewer "
            "--prompt-words or --prompt-tokens, or a lower --max-new-tokens")


def _long_sentences(reviews: list) -> list[str]:
    return [s for s in review_sentences(reviews) if len(s.split()) >= MIN_SENTENCE_WORDS]


def _make(records: list[str | None], settings: PromptSettings, tokenizer: Any, max_prompt_tokens: int | None,
          part: str) -> list[str]:
    """The records' prompts by the settings' rule, deduplicated in record order."""
    empty = too_long = 0
    texts = [r.strip() if isinstance(r, str) else "" for r in records]
    if settings.tokens is not None:
        low, high = settings.tokens
        rng = random.Random(f"prompt-tokens-{settings.seed}-{part}")
        lengths = [rng.randint(low, high) for _ in texts]  # one draw per record, empty ones too: stable
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        prompts = [_prefix(tokenizer, record_ids, k) for record_ids, k in zip(ids, lengths)]
    elif settings.words:
        prompts = [" ".join(t.split()[: settings.words]) for t in texts]
    else:
        prompts = texts
    kept = []
    lengths_of = _token_counts(tokenizer, prompts) if tokenizer is not None and max_prompt_tokens else None
    for k, prompt in enumerate(prompts):
        if not prompt:
            empty += 1
        elif lengths_of is not None and lengths_of[k] > max_prompt_tokens:
            too_long += 1
        else:
            kept.append(prompt)
    unique = list(dict.fromkeys(kept))
    logger.info("%d %s prompts from %d records, %s; dropped %d empty, %d too long for the policy's context, "
                "%d repeats", len(unique), part, len(records), settings.rule, empty, too_long,
                len(kept) - len(unique))
    return unique


def _prefix(tokenizer: Any, ids: list[int], k: int) -> str:
    """The text of the first `k` tokens, shortened while it ends inside a character (a byte-level BPE can split
    one)."""
    k = min(k, len(ids))
    text = tokenizer.decode(ids[:k])
    while k > 1 and text.endswith("\ufffd"):
        k -= 1
        text = tokenizer.decode(ids[:k])
    return text.strip()


def _token_counts(tokenizer: Any, prompts: list[str]) -> list[int]:
    """Each prompt's length as `models.prompt_ids` feeds it (BOS included)."""
    bos = 1 if tokenizer.bos_token_id is not None else 0
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    return [len(x) + bos for x in ids]


def prompts_digest(prompts: list[str]) -> str:
    """SHA-256 of a list of prompts, in order: which prompts a run's samples were drawn for (records and keys)."""
    return hashlib.sha256("\n".join(prompts).encode()).hexdigest()


def _digest(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(json.dumps(t) for t in texts).encode()).hexdigest()


def choose_prompts(pools: Pools, split: str, count: int, seed: int) -> list[str]:
    """`count` seeded draws from the 'train' or 'heldout' pool (the BOS prompt repeated for --prompt-mode bos)."""
    pool = pools.train if split == "train" else pools.heldout
    if pool == [""]:
        return [""] * count
    if count > len(pool):
        fix = ("use fewer --num-samples, more --samples-per-prompt, or a larger prompt source" if split == "train" else
               "use fewer --num-prompts (a sweep: --eval-prompts), or rerun `python3 text_generation.py` with a "
               "larger --heldout-fraction or prompt source")
        raise PipelineError(f"asked for {count} {'training' if split == 'train' else 'held-out'} prompts but "
                            f"{pools.provenance['source']} gives {len(pool)} ({pools.provenance['rule']}); {fix}")
    return random.Random(seed).sample(pool, count)


def check_unchanged(generation: Mapping[str, Any], pools: Pools, command: str) -> None:
    """Refuse prompts made from a source whose records changed since stage 1 recorded them."""
    recorded = (generation.get("provenance") or {}).get("prompts")
    if recorded and recorded.get("records_sha256") != pools.provenance.get("records_sha256"):
        raise PipelineError(f"the records of {pools.provenance['source']} changed since stage 1 made this run's "
                            f"prompts from them: restore the source, or rerun `python3 text_generation.py` and "
                            f"then `{command}`")


def prompts_needed(num_samples: int, samples_per_prompt: int) -> int:
    return math.ceil(num_samples / samples_per_prompt)
