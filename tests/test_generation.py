import pytest
import torch

from sentiment_dpo.generation import Sample, completion_logprobs, sample_completions
from sentiment_dpo.models import load_policy, prompt_ids


@pytest.fixture(scope="module")
def policy(tiny_policy):
    return load_policy(str(tiny_policy), torch.device("cpu"))


def test_samples_come_back_in_prompt_order_and_are_seeded(policy):
    prompts = ["the movie was", "a", "the plot and the acting were"]
    samples = sample_completions(policy.model, policy.tokenizer, prompts, 2, 6, 1.0, batch_size=4, seed=3)
    assert [s.prompt_index for s in samples] == [0, 0, 1, 1, 2, 2]
    assert all(1 <= len(s.completion_ids) <= 6 for s in samples)
    again = sample_completions(policy.model, policy.tokenizer, prompts, 2, 6, 1.0, batch_size=4, seed=3)
    assert [s.completion_ids for s in samples] == [s.completion_ids for s in again]


def test_batched_logprobs_match_one_at_a_time(policy):
    """Padding must not change a sequence's log-probability."""
    samples = [Sample(0, "the movie", "", [5, 9, 12]), Sample(1, "a much longer prompt than that", "", [7]),
               Sample(2, "", "", [3, 3, 3, 3])]
    batched = completion_logprobs(policy.model, policy.tokenizer, samples, batch_size=3)
    for sample, value in zip(samples, batched):
        ids = torch.tensor([prompt_ids(policy.tokenizer, sample.prompt) + sample.completion_ids])
        logps = torch.log_softmax(policy.model(ids).logits[0, :-1], -1)
        start = len(prompt_ids(policy.tokenizer, sample.prompt))
        expected = sum(logps[t - 1, ids[0, t]].item() for t in range(start, ids.shape[1]))
        assert value == pytest.approx(expected, abs=1e-4)


def test_samples_ignore_the_models_own_generation_config(policy):
    """A hub model's generation_config (repetition penalty, top-k, a minimum length) must not reshape samples."""
    prompts = ["the movie was", "the plot"]
    plain = sample_completions(policy.model, policy.tokenizer, prompts, 3, 6, 1.0, batch_size=4, seed=7)
    own = policy.model.generation_config
    policy.model.generation_config.update(repetition_penalty=5.0, top_k=2, min_new_tokens=6, no_repeat_ngram_size=1)
    try:
        shaped = sample_completions(policy.model, policy.tokenizer, prompts, 3, 6, 1.0, batch_size=4, seed=7)
    finally:
        policy.model.generation_config = own
    assert [s.completion_ids for s in shaped] == [s.completion_ids for s in plain]
    assert policy.model.generation_config.repetition_penalty == 5.0  # the model's own config is left as it was
    policy.model.generation_config.update(repetition_penalty=1.0, top_k=50, min_new_tokens=None,
                                          no_repeat_ngram_size=0)


def test_left_padded_batches_sample_what_one_prompt_at_a_time_samples(policy):
    """Near-greedy sampling (temperature 1e-4: the argmax token has all the mass), so the draw does not depend on
    the batch's seed: a batch of prompts of different lengths, left-padded, gives each prompt's own completion."""
    prompts = ["the movie was", "a", "the plot and the acting were quite", "the ending"]
    batched = sample_completions(policy.model, policy.tokenizer, prompts, 1, 6, 1e-4, batch_size=4, seed=0)
    for prompt, sample in zip(prompts, batched):
        alone = sample_completions(policy.model, policy.tokenizer, [prompt], 1, 6, 1e-4, batch_size=1, seed=5)[0]
        assert sample.completion_ids == alone.completion_ids, prompt
        # and it is the greedy continuation, computed token by token without padding
        ids = prompt_ids(policy.tokenizer, prompt)
        for token in alone.completion_ids:
            with torch.no_grad():
                assert policy.model(torch.tensor([ids])).logits[0, -1].argmax().item() == token
            ids.append(token)
