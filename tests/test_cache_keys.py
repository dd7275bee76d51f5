"""One key builder for every cache (sentiment_dpo/cache_keys.py): each ingredient it holds, changed alone, is a miss,
and each cache's key goes through it."""

import importlib.metadata

import pytest
import torch

from sentiment_dpo import cache_keys, files, kernels
from sentiment_dpo.embedded import default_models
from sentiment_dpo.evaluation import ceiling_samples
from sentiment_dpo.methods import reference_logps_cache
from sentiment_dpo.models import load_classifier, load_policy
from sentiment_dpo.stages.generate import generations_key
from sentiment_dpo.config import GenerationConfig

from test_ceiling_cache import evaluator_for

INPUTS = {"weights_sha256": "ab" * 32, "batch_size": 8}


def upgraded(monkeypatch, library: str) -> None:
    """`library` reports another version string from now on (as after `pip install -U`)."""
    real = importlib.metadata.version

    def version(name: str) -> str:
        return real(name) + ".post1" if name == library else real(name)

    monkeypatch.setattr(files, "version", version)


@pytest.mark.parametrize("library", ["torch", "transformers", "trl", "peft", "sentiment-dpo"])
def test_a_library_upgrade_is_a_miss(monkeypatch, library):
    before = cache_keys.cache_key("generations", INPUTS)
    upgraded(monkeypatch, library)
    assert cache_keys.cache_key("generations", INPUTS) != before


def test_the_schema_the_kernels_the_kind_and_the_inputs_are_each_a_miss(monkeypatch):
    before = cache_keys.cache_key("generations", INPUTS)
    assert cache_keys.cache_key("generations", dict(INPUTS)) == before  # the same: a hit
    assert cache_keys.cache_key("ceiling", INPUTS) != before
    assert cache_keys.cache_key("generations", INPUTS | {"batch_size": 9}) != before
    with monkeypatch.context() as patch:
        patch.setattr(cache_keys, "SCHEMA_VERSION", cache_keys.SCHEMA_VERSION + 1)
        assert cache_keys.cache_key("generations", INPUTS) != before
    with monkeypatch.context() as patch:
        real = kernels.in_effect
        patch.setattr(kernels, "in_effect", lambda: real() | {"neutral_products": True})
        assert cache_keys.cache_key("generations", INPUTS) != before
    with monkeypatch.context() as patch:
        patch.setenv("MKL_CBWR", "COMPATIBLE,STRICT")  # a library setting the process runs with
        assert cache_keys.cache_key("generations", INPUTS) != before


@pytest.mark.parametrize("library", ["torch", "transformers", "trl"])
def test_every_cache_misses_after_an_upgrade(monkeypatch, tmp_path, tiny_policy, tiny_reward, tiny_judge, library):
    """Stage 1's rows, the ceiling, the reference log-probs, the merged classifiers and the SmolLM2 folder."""
    cpu = torch.device("cpu")
    policy, reward = load_policy(str(tiny_policy), cpu), load_classifier(str(tiny_reward), cpu)
    for name in default_models.ADAPTER_FILES:
        (tmp_path / name).write_bytes(b"weights")
    monkeypatch.setattr(default_models, "REWARD_DIR", tmp_path)
    evaluator = evaluator_for(tiny_policy, tiny_reward, tiny_judge)
    config = GenerationConfig(policy=str(tiny_policy), reward=str(tiny_reward))
    texts = [((1, 2), (3, 4))]

    def keys() -> list:
        return [generations_key(config, policy, reward, ["the movie was"]),
                ceiling_samples.sampling_record(evaluator, 4)["key"],
                reference_logps_cache.reference_record(policy.model, texts, 8, {})["key"],
                default_models.reward_path(), default_models.smollm2_folder()]

    before = keys()
    assert keys() == before
    upgraded(monkeypatch, library)
    after = keys()
    assert all(a != b for a, b in zip(before, after)), [a == b for a, b in zip(before, after)]
