#!/usr/bin/env python3
"""Rehearse the original experiment (`--preset reference`) at its real size without the hub.

Builds architecture-identical stand-ins of the preset's models and puts them in a Hugging Face cache under the
real hub ids, so `from_pretrained("lvwerra/gpt2-imdb")` loads them with HF_HUB_OFFLINE=1 exactly as it loads the
downloads of a user whose cache holds them:

- `lvwerra/gpt2-imdb`: a GPT-2 with gpt2's config (12 layers, width 768, 1,024 positions, 124M parameters) and a
  byte-level BPE of GPT-2's 50,257 entries (trained on the embedded review corpus, topped up with seeded filler
  words to reach that size);
- `lvwerra/distilbert-imdb`: a DistilBERT sequence classifier with distilbert-base's config (6 layers, width 768,
  66M parameters), a 30,522-entry WordPiece vocabulary and the two labels NEGATIVE / POSITIVE of
  lvwerra/distilbert-imdb.

Their weights are random (the classifier's head scaled so that rewards spread over a few logits): they measure
paths, memory and time, not alignment; every number they give is about cost only. IMDb-shaped prompts (`text` and
`label` columns, train and test splits) go into a local `save_to_disk` folder built from the embedded corpus's
reviews, since `datasets` loads no hub id from a bare hub cache.

    python3 scripts/rehearse_reference.py --out rehearsal            # stand-ins, cache and prompts (about 1 min)
    HF_HUB_OFFLINE=1 HF_HUB_CACHE=rehearsal/hub python3 run_pipeline.py --preset reference \\
        --prompts rehearsal/imdb --run-dir runs/reference_rehearsal

`--tiny` builds 2-layer models of the same kinds under the same ids (the test suite's rehearsal of the path).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
from pathlib import Path

POLICY_ID = "lvwerra/gpt2-imdb"
REWARD_ID = "lvwerra/distilbert-imdb"
GPT2_VOCAB = 50257
BERT_VOCAB = 30522
EOS = "<|endoftext|>"
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = {0: "NEGATIVE", 1: "POSITIVE"}
# spreads a random head's logits over a few units, so that pairs differ in reward as a trained classifier's do
HEAD_SCALE = 40.0


def filler_words(count: int, seed: int) -> list[str]:
    """Seeded pseudo-words: enough distinct letter pairs for a BPE to reach GPT-2's vocabulary size."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(count)]


def gpt2_tokenizer(texts: list[str], vocab_size: int, seed: int):
    """Byte-level BPE as GPT-2's (no prefix space, `<|endoftext|>` its only special token and the last id)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = texts + [" ".join(filler_words(20, seed + k)) for k in range(vocab_size // 2)]
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens([EOS])
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"the BPE reached {tok.get_vocab_size()} entries, not {vocab_size}")
    return GPT2TokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS)


def bert_tokenizer(texts: list[str], vocab_size: int):
    """Lower-cased WordPiece as distilbert-base-uncased's, topped up with `[unusedN]` entries (as BERT's own
    vocabulary has) to exactly `vocab_size`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import DistilBertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIAL,
                                                             show_progress=False))
    vocab = sorted(tok.get_vocab().items(), key=lambda item: item[1])
    words = [word for word, _ in vocab] + [f"[unused{k}]" for k in range(vocab_size - len(vocab))]
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer = tok.normalizer, tok.pre_tokenizer
    from tokenizers.processors import TemplateProcessing

    backend.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                special_tokens=[("[CLS]", words.index("[CLS]")),
                                                                ("[SEP]", words.index("[SEP]"))])
    return DistilBertTokenizerFast(tokenizer_object=backend, model_max_length=512)


def build_policy(out: Path, texts: list[str], tiny: bool, seed: int) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = gpt2_tokenizer(texts, 512 if tiny else GPT2_VOCAB, seed)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    size = dict(n_layer=2, n_embd=32, n_head=2) if tiny else {}  # else gpt2's own: 12 layers, width 768, 12 heads
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, bos_token_id=eos, eos_token_id=eos, **size)
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_reward(out: Path, texts: list[str], tiny: bool, seed: int) -> None:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = bert_tokenizer(texts, 400 if tiny else BERT_VOCAB)
    size = dict(n_layers=2, dim=32, n_heads=2, hidden_dim=64) if tiny else {}  # else distilbert-base's own
    config = DistilBertConfig(vocab_size=len(tokenizer), num_labels=2, id2label=LABELS,
                              label2id={name: index for index, name in LABELS.items()}, **size)
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.mul_(HEAD_SCALE)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def put_in_hub_cache(folder: Path, repo_id: str, hub_cache: Path) -> Path:
    """Lay `folder`'s files out as huggingface_hub's cache holds a download of `repo_id` (refs/main naming a
    snapshot); returns the snapshot folder."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    digest = hashlib.sha1()
    for file in sorted(folder.iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    commit = digest.hexdigest()
    snapshot = repo / "snapshots" / commit
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def imdb_shaped(out: Path, train: list[tuple[str, int]], test: list[tuple[str, int]]) -> None:
    """A DatasetDict with stanfordnlp/imdb's splits and columns (`text`, `label`: 0 negative, 1 positive)."""
    from datasets import Dataset, DatasetDict

    def split(rows: list[tuple[str, int]]) -> Dataset:
        return Dataset.from_dict({"text": [text for text, _ in rows], "label": [label for _, label in rows]})

    DatasetDict({"train": split(train), "test": split(test)}).save_to_disk(str(out))


def build(out: Path, tiny: bool = False, seed: int = 0) -> dict[str, Path]:
    """Stand-ins in `out/hub` (a Hugging Face cache) and IMDb-shaped prompts in `out/imdb`."""
    from sentiment_dpo.embedded.corpus import load_corpus

    corpus = load_corpus()
    reviews = {name: [(r.text, int(r.label > 0)) for r in getattr(corpus, name)]
               for name in ("train_reviews", "heldout_reviews")}
    texts = [text for rows in reviews.values() for text, _ in rows]
    staging = out / "models"
    build_policy(staging / "policy", texts, tiny, seed)
    build_reward(staging / "reward", texts, tiny, seed)
    hub = out / "hub"
    put_in_hub_cache(staging / "policy", POLICY_ID, hub)
    put_in_hub_cache(staging / "reward", REWARD_ID, hub)
    shutil.rmtree(staging)
    if (out / "imdb").exists():
        shutil.rmtree(out / "imdb")
    imdb_shaped(out / "imdb", reviews["train_reviews"], reviews["heldout_reviews"])
    return {"hub": hub, "prompts": out / "imdb"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("rehearsal"), help="where hub/ and imdb/ go")
    parser.add_argument("--tiny", action="store_true", help="2-layer models of the same kinds (tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = build(args.out, args.tiny, args.seed)
    print(f"HF_HUB_OFFLINE=1 HF_HUB_CACHE={paths['hub']} python3 run_pipeline.py --preset reference "
          f"--prompts {paths['prompts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
