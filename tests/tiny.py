"""Tiny models and a tiny fake corpus, built inside the test suite (no network, seconds on a CPU)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE_WORDS = ["great", "wonderful", "moving", "funny", "brilliant", "charming"]
NEGATIVE_WORDS = ["boring", "awful", "dull", "clumsy", "bad", "tedious"]
FILLER = ["the", "movie", "film", "plot", "acting", "story", "was", "is", "and", "but", "with", "a", "cast",
          "director", "scenes", "really", "quite", "very", "ending", "characters"]


def fake_sentence(rng: random.Random, positive: bool) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(7, 12))]
    words.insert(rng.randint(1, len(words)), rng.choice(POSITIVE_WORDS if positive else NEGATIVE_WORDS))
    return " ".join(words) + " ."


def write_fake_corpus(cache: Path, seed: int = 0) -> None:
    """Pang & Lee-shaped CSVs (label, lower-cased text) where the cache expects them."""
    rng = random.Random(seed)
    folder = cache / "pang_lee"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "polarity-en-pang&lee1.csv", "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for i in range(80):
            positive = i % 2 == 0
            writer.writerow(["1" if positive else "-1", " \n".join(fake_sentence(rng, positive) for _ in range(6))])
    with open(folder / "polarity-en-pang&lee2.csv", "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for i in range(100):
            positive = i % 2 == 0
            writer.writerow(["1" if positive else "-1", fake_sentence(rng, positive)])


def all_words() -> list[str]:
    return sorted(set(POSITIVE_WORDS + NEGATIVE_WORDS + FILLER + ["."]))


def build_tiny_policy(out: Path, seed: int = 0) -> Path:
    """A 2-layer GPT-2 (width 32) with a byte-level BPE trained on fake sentences; no pad token, like GPT-2."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from sentiment_dpo.embedded.policy_pretraining import train_tokenizer

    rng = random.Random(seed)
    tokenizer = train_tokenizer([fake_sentence(rng, i % 2 == 0) for i in range(200)], vocab_size=320)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # a trained model's final LayerNorm is not the identity (a logit bias folds into it)
        model.transformer.ln_f.weight.uniform_(0.5, 1.5)
        model.transformer.ln_f.bias.normal_(0.0, 0.5)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_reward(out: Path, seed: int = 0, labels: tuple[str, str] = ("NEGATIVE", "POSITIVE")) -> Path:
    """A 2-layer BERT classifier (width 32) with a word-level WordPiece vocabulary; random weights."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + all_words()
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer = BertTokenizerFast(tokenizer_object=backend)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2,
                        id2label={0: labels[0], 1: labels[1]}, label2id={labels[0]: 0, labels[1]: 1})
    model = BertForSequenceClassification(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# Hand-written preference pairs for training tests.
PAIRS = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in [
    ("the movie was", " great and moving .", " dull and bad ."),
    ("the plot", " is charming .", " is tedious and clumsy ."),
    ("a cast", " with brilliant scenes .", " with awful scenes ."),
    ("the ending", " was funny .", " was boring ."),
]]
