"""Held-out prompts are never training prompts."""

import pytest

from sentiment_dpo import prompts
from sentiment_dpo.embedded.corpus import Corpus, LabeledText
from sentiment_dpo.errors import PipelineError

STOCK = "this is a film that"  # a stock opening both splits share


def test_heldout_prompts_leave_out_every_training_prompt(monkeypatch):
    def review(*sentences: str) -> LabeledText:
        return LabeledText(" ".join(sentences), 1)

    corpus = Corpus(train_reviews=[review(f"{STOCK} nobody should miss at all .",
                                          "the cast is quite good all along .")],
                    heldout_reviews=[review(f"{STOCK} everyone will love for years .",
                                            "my own view of the ending is mixed .")],
                    train_sentences=[], heldout_sentences=[])
    monkeypatch.setattr(prompts, "load_corpus", lambda: corpus)
    pools = prompts.prompt_pools(prompts.PromptSettings())
    assert set(prompts.choose_prompts(pools, "train", 2, seed=0)) == {STOCK, "the cast is quite good"}
    assert prompts.choose_prompts(pools, "heldout", 1, seed=0) == ["my own view of the"]
    with pytest.raises(PipelineError, match="asked for 2 held-out prompts but the built-in Pang & Lee reviews "
                                            "gives 1 .the first 5 words of each record."):
        prompts.choose_prompts(pools, "heldout", 2, seed=0)
