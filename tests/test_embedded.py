"""The embedded default: the committed policy loads like any hub model; the reward recipe runs end to end."""

import json

import pytest
import torch

from sentiment_dpo import embedded
from sentiment_dpo.corpus import load_corpus
from sentiment_dpo.reward_pretraining import RewardPretrainingConfig, pretrain_reward


def test_committed_policy_loads_with_from_pretrained_and_samples():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = embedded.policy_path()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) < 10_000_000
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer("this movie is")["input_ids"]])
    out = model.generate(ids, do_sample=True, max_new_tokens=5, pad_token_id=tokenizer.eos_token_id)
    assert out.shape[1] > ids.shape[1]
    quality = json.loads((path / embedded.QUALITY_FILE).read_text())
    assert quality["heldout_perplexity"] > 1.0


def test_committed_weights_stay_small():
    size = sum(f.stat().st_size for f in embedded.POLICY_DIR.iterdir())
    assert size < 25 * 2**20


def test_reward_recipe_trains_and_saves_a_loadable_classifier(tiny_reward, tmp_path):
    from transformers import AutoModelForSequenceClassification

    corpus = load_corpus()
    quality = pretrain_reward(corpus.train_sentences[:32], corpus.heldout_sentences[:16], tmp_path,
                              RewardPretrainingConfig(epochs=1, batch_size=16), base_path=tiny_reward)
    assert 0.0 <= quality["heldout_sentence_accuracy"] <= 1.0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert model.config.id2label[1] == "POSITIVE"


def test_missing_policy_is_a_clear_error(monkeypatch, tmp_path):
    from sentiment_dpo.errors import PipelineError

    monkeypatch.setattr(embedded, "POLICY_DIR", tmp_path)
    with pytest.raises(PipelineError, match="embedded policy is missing"):
        embedded.policy_path()
