"""Where a trained logit bias starts: the reward model's token scores (their definition, the fitted reward per unit
of score against hand-computed values), that training really starts there, and the choice's refusals."""

from __future__ import annotations

import pytest
import torch
from test_stages import run_dir  # noqa: F401  (fixture: a run directory after stages 1 and 2)
from transformers import AutoModelForCausalLM

from sentiment_dpo import commands, layout
from sentiment_dpo import files
from sentiment_dpo.methods.bias_start import TEMPLATES, TokenPrior, fit_token_prior, reward_per_score, token_scores
from sentiment_dpo.methods.logit_bias import fold_direction
from sentiment_dpo.models import load_classifier, load_policy
from sentiment_dpo.methods.fast_dpo import token_columns
from sentiment_dpo.stages.train import pairs_dataset, read_pairs

CPU = torch.device("cpu")


def test_token_scores_are_each_templates_standardised_rewards_averaged(tiny_policy, tiny_reward):
    tokenizer = load_policy(str(tiny_policy), CPU).tokenizer
    classifier = load_classifier(str(tiny_reward), CPU)
    known = len(tokenizer)
    templates = ("the movie was{}", "{} movie")
    scores = token_scores(tokenizer, classifier, known + 3, batch_size=64, templates=templates)
    expected = torch.zeros(known)
    for template in templates:  # by hand: every token's text in the template, one text at a time
        rewards = torch.tensor([classifier.score([template.format(tokenizer.decode([t]))], 1)[0][0]
                                for t in range(known)])
        expected += (rewards - rewards.mean()) / rewards.std()
    # batched, padded scoring differs from one text at a time by up to ~2e-4 on some CPUs; a population std in place
    # of the sample std (a factor 1.0016 here) or a missing template would be off by far more
    assert torch.allclose(scores[:known], expected / 2, atol=5e-4)
    assert torch.equal(scores[known:], torch.zeros(3))  # ids past the vocabulary (a padded embedding) score 0
    assert abs(float(scores[:known].mean())) < 1e-5  # the average token scores 0: no pull toward any length


def test_reward_per_score_is_the_least_squares_slope_of_reward_gaps_on_score_gaps():
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0])
    # score gaps 3 and 2, reward gaps 0.6 and 0.5
    assert reward_per_score(scores, [[1, 2], [3]], [[0], [1]], [1.0 - 0.4, 0.2 - -0.3]) == pytest.approx(
        (3 * 0.6 + 2 * 0.5) / (3 ** 2 + 2 ** 2))
    assert TokenPrior(scores, 0.25).bias(0.5).tolist() == pytest.approx([0.0, 0.5, 1.0, 1.5])  # k·s/β


def _bias_of(model_dir, reference_dir) -> torch.Tensor:
    """The bias b a saved policy adds to every logit: its head is W_ref + b·uᵀ/c."""
    reference = AutoModelForCausalLM.from_pretrained(reference_dir)
    direction, constant = fold_direction(reference)
    shift = (AutoModelForCausalLM.from_pretrained(model_dir).get_output_embeddings().weight
             - reference.get_output_embeddings().weight).detach()
    return shift @ direction * constant / (direction @ direction)


@pytest.mark.parametrize("with_ids", [True, False])
def test_the_token_bias_recipe_starts_from_the_reward_models_token_scores(with_ids, run_dir, tiny_policy,  # noqa: F811
                                                                          tiny_reward):
    if not with_ids:  # pairs written by hand or by an older version carry texts only: tokenized for the fit too
        rows = read_pairs(run_dir / layout.PAIRS)
        files.write_jsonl(run_dir / layout.PAIRS,
                          [{k: v for k, v in row.items() if not k.endswith("_ids")} for row in rows])
    # a learning rate too small to move anything: the saved bias is where training started
    assert commands.train(["sigmoid", "--run-dir", str(run_dir), "--max-steps", "1", "--batch-size", "4",
                              "--learning-rate", "1e-12", "--beta", "0.2", "--recipe", "token-bias"]) == 0
    model_dir = run_dir / "models" / "sigmoid"
    policy = load_policy(str(tiny_policy), CPU)
    dataset = pairs_dataset(read_pairs(run_dir / layout.PAIRS), policy.tokenizer)
    _, chosen, rejected = token_columns(dataset)
    gaps = [row["chosen_reward"] - row["rejected_reward"] for row in read_pairs(run_dir / layout.PAIRS)]
    prior = fit_token_prior(policy.tokenizer, load_classifier(str(tiny_reward), CPU), chosen, rejected, gaps,
                            policy.model.get_output_embeddings().weight.shape[0], batch_size=64)
    expected = prior.bias(0.2)
    scale = float(expected.abs().max())  # the tiny reward model barely varies: a small start, but not zero
    assert scale > 1e-6
    assert torch.allclose(_bias_of(model_dir, tiny_policy), expected, atol=1e-3 * scale)
    settings = files.read_yaml(model_dir / "training.config.yaml", "")
    assert settings["bias_start"] == "reward"
    assert settings["provenance"]["bias_start"] == {
        "templates": list(TEMPLATES), "reward_per_score": pytest.approx(prior.reward_per_score, rel=1e-4)}
    assert "started from the reward model's token scores" in (model_dir / "README.md").read_text()

    assert commands.train(["sigmoid", "--run-dir", str(run_dir), "--max-steps", "1", "--batch-size", "4",
                              "--learning-rate", "1e-12", "--recipe", "token-bias", "--bias-start", "zero"]) == 0
    assert _bias_of(model_dir, tiny_policy).abs().max() < 1e-3 * scale
    assert "bias_start" not in files.read_yaml(model_dir / "training.config.yaml", "")["provenance"]


@pytest.mark.parametrize("argv", [["sigmoid"], ["sigmoid", "--recipe", "token-bias", "--no-logit-bias"], ["rloo"],
                                  ["sigmoid", "--lora-rank", "4"], ["sigmoid", "--logit-bias", "--bias-start", "half"]])
def test_a_bias_start_without_a_trained_bias_is_refused(run_dir, argv, capsys):  # noqa: F811
    if "--bias-start" not in argv:
        argv = [*argv, "--bias-start", "reward"]
    assert commands.train([*argv, "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "--bias-start" in err and len(err.strip().splitlines()) == 1


def test_a_bias_start_for_a_model_that_cannot_take_the_bias_is_refused(tiny_policy):
    from sentiment_dpo.config import TrainingConfig
    from sentiment_dpo.errors import PipelineError
    from sentiment_dpo.methods.token_bias import check_trained_parameters

    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    with torch.no_grad():
        model.transformer.ln_f.bias.zero_()  # nothing to fold a bias into
    check_trained_parameters(model, TrainingConfig(loss="sigmoid"))  # the standard method: the weights train
    with pytest.raises(PipelineError, match="--logit-bias trains a per-token logit bias.*has none: use --recipe "
                                            "standard"):
        check_trained_parameters(model, TrainingConfig(loss="sigmoid", logit_bias=True, bias_start="reward"))
