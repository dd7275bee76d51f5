"""The embedded default: the committed policy loads like any hub model; the reward recipe runs end to end."""

import json
import math

import pytest
import torch

from sentiment_dpo.embedded import default_models
from sentiment_dpo.embedded.corpus import load_corpus
from sentiment_dpo.embedded.reward_pretraining import RewardPretrainingConfig, merge_adapter, pretrain_reward


def test_committed_policy_loads_with_from_pretrained_and_samples():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_models.policy_path()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) < 10_000_000
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer("this movie is")["input_ids"]])
    out = model.generate(ids, do_sample=True, max_new_tokens=5, pad_token_id=tokenizer.eos_token_id)
    assert out.shape[1] > ids.shape[1]
    quality = json.loads((path / default_models.QUALITY_FILE).read_text())
    assert set(quality) >= {"heldout_perplexity", "train_seconds"}


def test_pretraining_perplexity_is_exp_of_the_mean_token_nll(tiny_policy):
    """The estimator behind the embedded policy's held-out perplexity, against a token-by-token computation."""
    from transformers import AutoModelForCausalLM

    from sentiment_dpo.embedded.policy_pretraining import perplexity

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
    folders = (default_models.POLICY_DIR, default_models.REWARD_DIR, default_models.JUDGE_DIR,
               default_models.CEILING_DIR)
    size = sum(f.stat().st_size for folder in folders for f in folder.iterdir())
    assert size < 25 * 2**20


def test_reward_recipe_trains_an_adapter_that_merges_into_a_loadable_classifier(tiny_reward, tmp_path):
    from transformers import AutoModelForSequenceClassification

    corpus = load_corpus()
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    quality = pretrain_reward(corpus.train_sentences[:32], corpus.heldout_sentences[:16], adapter,
                              RewardPretrainingConfig(epochs=1, batch_size=16, learning_rate=0.01),
                              base_path=tiny_reward)
    # only the adapter and the head are saved (small enough to commit), not the base's weights
    assert quality["trained_parameters"] < sum(p.numel() for p in AutoModelForSequenceClassification
                                               .from_pretrained(tiny_reward).parameters())
    merge_adapter(adapter, merged, base_path=tiny_reward)
    model = AutoModelForSequenceClassification.from_pretrained(merged)
    assert model.config.id2label[1] == "POSITIVE"
    base = AutoModelForSequenceClassification.from_pretrained(tiny_reward)
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight,
                           base.bert.encoder.layer[0].attention.self.query.weight)  # the adapter merged in
    # the reported accuracy is the merged model's share of correct held-out predictions, counted here by hand
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    heldout = corpus.heldout_sentences[:16]
    with torch.no_grad():
        predicted = model(**tokenizer([e.text for e in heldout], padding=True, return_tensors="pt")).logits.argmax(-1)
    correct = sum(int(p) == e.label for p, e in zip(predicted.tolist(), heldout))
    assert quality["heldout_sentence_accuracy"] == correct / 16


def test_missing_policy_is_a_clear_error(monkeypatch, tmp_path):
    from sentiment_dpo.errors import PipelineError

    monkeypatch.setattr(default_models, "POLICY_DIR", tmp_path)
    with pytest.raises(PipelineError, match="embedded policy is missing"):
        default_models.policy_path()


def test_judge_recipe_trains_on_review_windows_and_reports_both_accuracies(tiny_reward, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from sentiment_dpo.embedded.corpus import review_windows

    corpus = load_corpus()
    windows = review_windows(corpus.train_reviews, default_models.JUDGE_WINDOW_WORDS,
                             default_models.JUDGE_WINDOWS_PER_REVIEW, 0)
    # every window is a run of consecutive words of one review, labelled with that review's polarity
    texts = {r.text: r.label for r in corpus.train_reviews}
    assert all(any(w.text in t and texts[t] == w.label for t in texts) for w in windows)
    quality = default_models.build_judge(tmp_path / "judge", RewardPretrainingConfig(epochs=1, batch_size=16),
                                   base_path=tiny_reward)
    assert quality["train_windows"] == len(windows)
    assert set(quality) >= {"heldout_window_accuracy", "heldout_sentence_accuracy", "heldout_windows"}
    assert json.loads((tmp_path / "judge" / default_models.QUALITY_FILE).read_text()) == quality
    merge_adapter(tmp_path / "judge", tmp_path / "merged", base_path=tiny_reward)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert model.config.id2label[1] == "POSITIVE"


def test_a_changed_adapter_is_merged_into_another_folder(tmp_path, monkeypatch):
    """The merged classifier's folder is named by the adapter's content: a rebuilt adapter is never served the
    folder merged from the old one."""
    for name in default_models.ADAPTER_FILES:
        (tmp_path / name).write_bytes(b"weights v1")
    monkeypatch.setattr(default_models, "REWARD_DIR", tmp_path)
    before = default_models.reward_path()
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights v2")
    after = default_models.reward_path()
    assert after != before and after.name.startswith(default_models.REWARD_VERSION)
    (tmp_path / "adapter_model.safetensors").unlink()
    from sentiment_dpo.errors import PipelineError

    with pytest.raises(PipelineError, match="reward's adapter is missing .* --reward"):
        default_models.reward_path()


def test_other_cpu_kernels_merge_into_another_folder(tmp_path, monkeypatch):
    """The merge's matrix product rounds by the CPU kernels: a cache merged with other settings (the bitwise pin, or
    the user's own) is never served to a run with these."""
    for name in default_models.ADAPTER_FILES:
        (tmp_path / name).write_bytes(b"weights")
    monkeypatch.setattr(default_models, "REWARD_DIR", tmp_path)
    own = default_models.reward_path()
    assert default_models.reward_path() == own  # the same settings: the same folder
    assert own.name.startswith(f"{default_models.REWARD_VERSION}-minilm0.1.0-")  # the base encoder's version
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE,STRICT")
    assert default_models.reward_path() != own


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
        from sentiment_dpo.embedded import default_models

        def build(path: Path) -> dict:
            with open({str(tmp_path / "builds.log")!r}, "a") as log:
                log.write("built\\n")
            time.sleep(1.0)  # long enough for the other process to arrive while this one builds
            path.mkdir(parents=True)
            (path / default_models.QUALITY_FILE).write_text("{{}}")
            return {{}}

        print(default_models._ensure(Path({str(tmp_path / "model")!r}), build, "test model"))
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert outputs == [str(tmp_path / "model")] * 2
    assert (tmp_path / "builds.log").read_text() == "built\n"
