"""Fixtures: a fake corpus in a private cache, and tiny policy and reward models, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny import build_tiny_policy, build_tiny_reward, write_fake_corpus

# The package is imported as installed (`pip install -e .`, scripts/install.sh); pytest puts this folder on the path.
ROOT = Path(__file__).resolve().parents[1]

# no progress bars (a stage's stderr is its one-line error): before tqdm is imported, which reads the variable then
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"  # a test that reaches for the hub fails instead of hanging
# The suite runs on the CPU's own kernels, as a default run does. tests/bitwise/ pins the bitwise kernels for its
# whole process: tests/test_kernels.py runs it in a process of its own, with this variable set.
BITWISE_SUITE = "SENTIMENT_DPO_BITWISE_SUITE"
collect_ignore = [] if os.environ.get(BITWISE_SUITE) else ["bitwise"]


@pytest.fixture(scope="session", autouse=True)
def fake_cache(tmp_path_factory) -> Path:
    """Point the corpus cache at a fake Pang & Lee corpus, so no test downloads anything."""
    cache = tmp_path_factory.mktemp("cache")
    write_fake_corpus(cache)
    previous = os.environ.get("SENTIMENT_DPO_CACHE")
    os.environ["SENTIMENT_DPO_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("SENTIMENT_DPO_CACHE", None)
    else:
        os.environ["SENTIMENT_DPO_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("tiny_policy"))


@pytest.fixture(scope="session")
def tiny_reward(tmp_path_factory) -> Path:
    return build_tiny_reward(tmp_path_factory.mktemp("tiny_reward"))


@pytest.fixture(scope="session")
def tiny_judge(tmp_path_factory) -> Path:
    """A second tiny classifier, POSITIVE at index 0: the held-out judge of the tests."""
    return build_tiny_reward(tmp_path_factory.mktemp("tiny_judge"), seed=1, labels=("POSITIVE", "NEGATIVE"))
