"""The KL estimate against the exact KL: two new tokens from a tiny model, every sequence enumerated."""

import math

import pytest
import torch

from sentiment_dpo.evaluation.evaluator import EvalSettings, Evaluator
from sentiment_dpo.generation import completion_logprobs, sample_completions
from sentiment_dpo.evaluation.metrics import kl_estimate
from sentiment_dpo.models import load_classifier, load_policy, prompt_ids

PROMPT = "the movie was"


@pytest.fixture(scope="module")
def models(tiny_policy):
    reference = load_policy(str(tiny_policy), torch.device("cpu"))
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    torch.manual_seed(0)
    with torch.no_grad():  # a policy some way from the reference: shift the final layer norm
        policy.model.transformer.ln_f.bias.add_(torch.randn_like(policy.model.transformer.ln_f.bias) * 20.0)
    return policy, reference


@torch.no_grad()
def exact_kl(policy, reference, tokenizer) -> float:
    """KL(policy ‖ reference) over every 2-token completion of PROMPT (a sequence ends early at EOS)."""
    context = prompt_ids(tokenizer, PROMPT)
    eos = tokenizer.eos_token_id

    def next_logps(model, prefixes):  # (len(prefixes), vocab)
        return torch.log_softmax(model(torch.tensor(prefixes)).logits[:, -1].double(), -1)

    p1, q1 = next_logps(policy, [context])[0], next_logps(reference, [context])[0]
    vocab = p1.shape[0]
    prefixes = [context + [t] for t in range(vocab)]
    p2, q2 = next_logps(policy, prefixes), next_logps(reference, prefixes)  # (vocab, vocab)
    second = (p2.exp() * (p2 - q2)).sum(-1)  # KL of the second token given each first token
    second[eos] = 0.0  # the completion stopped at EOS
    return float((p1.exp() * (p1 - q1 + second)).sum())


def test_kl_estimate_matches_enumeration(models, tiny_reward):
    (policy, reference), tokenizer = models, models[0].tokenizer
    exact = exact_kl(policy.model, reference.model, tokenizer)
    assert 0.3 < exact < 5  # a real distance, not zero by construction
    samples = sample_completions(policy.model, tokenizer, [PROMPT], 4000, 2, 1.0, batch_size=500, seed=1)
    p = completion_logprobs(policy.model, tokenizer, samples, 500)
    q = completion_logprobs(reference.model, tokenizer, samples, 500)
    ratios = [a - b for a, b in zip(p, q)]
    standard_error = math.sqrt(sum((r - exact) ** 2 for r in ratios) / len(ratios) / len(ratios))
    assert kl_estimate(p, q) == pytest.approx(exact, abs=4 * standard_error)
    # the evaluator's path end to end: its KL is the same estimate on its own draw
    evaluator = Evaluator(reference, load_classifier(str(tiny_reward), torch.device("cpu")), None,
                          EvalSettings([PROMPT], 4000, 2, 500, seed=2))
    evaluator.evaluate_reference()
    metrics, _ = evaluator.evaluate(policy.model, tokenizer)
    assert metrics["kl"] == pytest.approx(exact, abs=4 * standard_error)


def test_the_rao_blackwellised_kl_is_exact_in_expectation_and_narrower(models):
    """Its value on a sample is Σ_t KL(π(·|prefix) ‖ π_ref(·|prefix)) along the sample: weighted by the policy's
    probability of every first token it gives the exact sequence KL (it does not depend on the last token), and on
    the policy's own samples its standard error is below the log-ratio's."""
    from sentiment_dpo.generation import Sample, completion_comparison

    (policy, reference), tokenizer = models, models[0].tokenizer
    exact = exact_kl(policy.model, reference.model, tokenizer)
    context, eos = prompt_ids(tokenizer, PROMPT), tokenizer.eos_token_id
    with torch.no_grad():
        first = torch.softmax(policy.model(torch.tensor([context])).logits[0, -1].double(), -1)
    enumerated = [Sample(0, PROMPT, "", [t] if t == eos else [t, 0]) for t in range(first.shape[0])]
    values = completion_comparison(policy.model, reference.model, tokenizer, enumerated, 256)[2]
    assert sum(p * v for p, v in zip(first.tolist(), values)) == pytest.approx(exact, rel=1e-5)
    samples = sample_completions(policy.model, tokenizer, [PROMPT], 2000, 2, 1.0, batch_size=500, seed=3)
    p, q, rb = completion_comparison(policy.model, reference.model, tokenizer, samples, 500)
    ratios = [a - b for a, b in zip(p, q)]

    def standard_error(xs):
        m = sum(xs) / len(xs)
        return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))

    assert sum(rb) / len(rb) == pytest.approx(exact, abs=4 * standard_error(rb))
    assert standard_error(rb) < 0.5 * standard_error(ratios)
