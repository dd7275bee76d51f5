"""The ceiling's samples are drawn once per content: reused by another run directory with the same models and
prompts, never served to a changed reward, judge, reference or prompt set."""

import shutil

import pytest
import torch

from sentiment_dpo.evaluation import ceiling_samples
from sentiment_dpo import files, layout
from sentiment_dpo.evaluation.evaluator import EvalSettings, Evaluator
from sentiment_dpo.models import load_classifier, load_policy

PROMPTS = ["the movie was", "the plot is", "a film with"]


def evaluator_for(policy, reward, judge, prompts=PROMPTS) -> Evaluator:
    cpu = torch.device("cpu")
    return Evaluator(load_policy(str(policy), cpu), load_classifier(str(reward), cpu),
                     load_classifier(str(judge), cpu, kind="judge"), EvalSettings(prompts, 1, 4, 8, 0))


def count_sampling(monkeypatch) -> list[int]:
    calls = []
    original = Evaluator.sample

    def sample(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "sample", sample)
    return calls


def perturb(folder) -> None:
    """Change a classifier's weights in place: same folder, same name, other content."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight[0].add_(1.0)  # both logits move, and apart: softmax changes too
        model.classifier.weight[1].sub_(1.0)
    model.save_pretrained(folder)


@pytest.fixture
def models(tmp_path, tiny_policy, tiny_reward, tiny_judge):
    """Private copies of the tiny models (the tests change them), and a private cache."""
    out = {}
    for name, source in (("policy", tiny_policy), ("reward", tiny_reward), ("judge", tiny_judge)):
        out[name] = tmp_path / name
        shutil.copytree(source, out[name])
    return out


def test_a_second_run_dir_reuses_the_ceiling_and_a_changed_model_never_does(tmp_path, models, monkeypatch):
    monkeypatch.setenv("SENTIMENT_DPO_CACHE", str(tmp_path / "cache"))
    calls = count_sampling(monkeypatch)
    first = ceiling_samples.load_or_sample(tmp_path / "run1", evaluator_for(**models), 4)
    assert len(calls) == 1 and len(first) == 12
    # another run directory, the same content: read from the cache, nothing sampled, the run's copy written
    second = ceiling_samples.load_or_sample(tmp_path / "run2", evaluator_for(**models), 4)
    assert len(calls) == 1 and second == first
    assert (tmp_path / "run2" / layout.CEILING_SAMPLES).read_text() == \
        (tmp_path / "run1" / layout.CEILING_SAMPLES).read_text()
    record = files.read_yaml(tmp_path / "run2" / layout.CEILING_RECORD, "")
    assert record["prompts"] == PROMPTS  # the ceiling stores its prompts, not only their hash
    # a changed reward file under the same name: sampled and scored again, in another cache entry
    perturb(models["reward"])
    rescored = ceiling_samples.load_or_sample(tmp_path / "run3", evaluator_for(**models), 4)
    assert len(calls) == 2 and [r["reward"] for r in rescored] != [r["reward"] for r in first]
    # a changed judge likewise, and the run directory's own stale copy is not served either
    perturb(models["judge"])
    judged = ceiling_samples.load_or_sample(tmp_path / "run3", evaluator_for(**models), 4)
    assert len(calls) == 3 and [r["judge_p_positive"] for r in judged] != [r["judge_p_positive"] for r in rescored]
    # other prompts, other samples
    ceiling_samples.load_or_sample(tmp_path / "run4", evaluator_for(**models, prompts=PROMPTS[:2]), 4)
    assert len(calls) == 4
    assert len([p for p in (tmp_path / "cache" / "ceiling").iterdir() if p.is_dir()]) == 4


def test_the_key_is_the_content_not_the_names(tmp_path, models):
    moved = {name: tmp_path / f"moved_{name}" for name in models}
    for name in models:
        shutil.copytree(models[name], moved[name])
    same = ceiling_samples.sampling_record(evaluator_for(**models), 4)
    elsewhere = ceiling_samples.sampling_record(evaluator_for(**moved), 4)
    assert same["key"] == elsewhere["key"] and same["reward"] != elsewhere["reward"]
    assert ceiling_samples.sampling_record(evaluator_for(**models), 8)["key"] != same["key"]
