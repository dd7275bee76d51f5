"""The embedded default: the committed policy loads like any hub model; the reward recipe runs end to end."""

import json
import math

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
    assert set(quality) >= {"heldout_perplexity", "train_seconds"}


def test_pretraining_perplexity_is_exp_of_the_mean_token_nll(tiny_policy):
    """The estimator behind the embedded policy's held-out perplexity, against a token-by-token computation."""
    from transformers import AutoModelForCausalLM

    from sentiment_dpo.policy_pretraining import perplexity

    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    stream = torch.arange(3, 3 + 2 * 8 + 5) % model.config.vocab_size  # two windows of 8, a remainder dropped
    nll = []
    with torch.no_grad():
        for window in stream[:16].view(2, 8):
            log_probs = torch.log_softmax(model(window[None]).logits[0, :-1], -1)
            nll += [-log_probs[t - 1, window[t]].item() for t in range(1, 8)]
    assert perplexity(model, stream, context=8, batch_size=1) == pytest.approx(math.exp(sum(nll) / len(nll)),
                                                                               rel=1e-5)


def test_committed_weights_stay_small():
    size = sum(f.stat().st_size for f in embedded.POLICY_DIR.iterdir())
    assert size < 25 * 2**20


def test_reward_recipe_trains_and_saves_a_loadable_classifier(tiny_reward, tmp_path):
    from transformers import AutoModelForSequenceClassification

    corpus = load_corpus()
    quality = pretrain_reward(corpus.train_sentences[:32], corpus.heldout_sentences[:16], tmp_path,
                              RewardPretrainingConfig(epochs=1, batch_size=16), base_path=tiny_reward)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert model.config.id2label[1] == "POSITIVE"
    # the reported accuracy is the saved model's share of correct held-out predictions, counted here by hand
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    heldout = corpus.heldout_sentences[:16]
    with torch.no_grad():
        predicted = model(**tokenizer([e.text for e in heldout], padding=True, return_tensors="pt")).logits.argmax(-1)
    correct = sum(int(p) == e.label for p, e in zip(predicted.tolist(), heldout))
    assert quality["heldout_sentence_accuracy"] == correct / 16


def test_missing_policy_is_a_clear_error(monkeypatch, tmp_path):
    from sentiment_dpo.errors import PipelineError

    monkeypatch.setattr(embedded, "POLICY_DIR", tmp_path)
    with pytest.raises(PipelineError, match="embedded policy is missing"):
        embedded.policy_path()


def test_judge_recipe_trains_on_review_windows_and_reports_both_accuracies(tiny_reward, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from sentiment_dpo.corpus import review_windows

    corpus = load_corpus()
    windows = review_windows(corpus.train_reviews, embedded.JUDGE_WINDOW_WORDS, embedded.JUDGE_WINDOWS_PER_REVIEW, 0)
    # every window is a run of consecutive words of one review, labelled with that review's polarity
    texts = {r.text: r.label for r in corpus.train_reviews}
    assert all(any(w.text in t and texts[t] == w.label for t in texts) for w in windows)
    quality = embedded.build_judge(tmp_path / "judge", RewardPretrainingConfig(epochs=1, batch_size=16),
                                   base_path=tiny_reward)
    assert quality["train_windows"] == len(windows)
    assert set(quality) >= {"heldout_window_accuracy", "heldout_sentence_accuracy", "heldout_windows"}
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "judge")
    assert model.config.id2label[1] == "POSITIVE"
    assert json.loads((tmp_path / "judge" / embedded.QUALITY_FILE).read_text()) == quality


def test_a_cache_build_runs_once_when_processes_ask_at_the_same_time(tmp_path):
    """Two processes (as under torchrun) both find the model missing: one builds, the other waits and uses it."""
    import subprocess
    import sys
    import textwrap

    from conftest import ROOT

    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from sentiment_dpo import embedded

        def build(path: Path) -> dict:
            with open({str(tmp_path / "builds.log")!r}, "a") as log:
                log.write("built\\n")
            time.sleep(1.0)  # long enough for the other process to arrive while this one builds
            path.mkdir(parents=True)
            (path / embedded.QUALITY_FILE).write_text("{{}}")
            return {{}}

        print(embedded._ensure(Path({str(tmp_path / "model")!r}), build, "test model"))
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert outputs == [str(tmp_path / "model")] * 2
    assert (tmp_path / "builds.log").read_text() == "built\n"
