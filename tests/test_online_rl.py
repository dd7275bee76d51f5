"""The reward callable the online methods train on."""

import pytest
import torch

from sentiment_dpo.models import load_classifier
from sentiment_dpo.methods.online_rl import OnlineReward
from tiny import build_tiny_reward

TEXTS = [("<|bos|>the movie was", " great and moving ."), ("<|bos|>the plot", " is dull .")]


@pytest.mark.parametrize("labels, positive_index", [(("NEGATIVE", "POSITIVE"), 1), (("POSITIVE", "NEGATIVE"), 0)])
def test_reward_is_the_positive_logit_found_by_name(tmp_path, labels, positive_index):
    folder = build_tiny_reward(tmp_path / "reward", seed=0, labels=labels)  # same weights, labels in either order
    classifier = load_classifier(str(folder), torch.device("cpu"))
    reward = OnlineReward(classifier, batch_size=8, prompt_prefix="<|bos|>")
    rewards = reward(prompts=[p for p, _ in TEXTS], completions=[c for _, c in TEXTS], completion_ids=[[1], [2]])
    # by hand: the classifier's logits on the texts without the policy's BOS, as stage 1 scores them
    tokenizer = classifier.model.tokenizer
    with torch.no_grad():
        logits = classifier.model.model(**tokenizer(["the movie was great and moving .", "the plot is dull ."],
                                                    padding=True, return_tensors="pt")).logits
    assert rewards == pytest.approx(logits[:, positive_index].tolist(), abs=1e-5)
    assert rewards != pytest.approx(logits[:, 1 - positive_index].tolist(), abs=1e-5)
