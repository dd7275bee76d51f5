"""Training only a per-token logit bias: the fold into the LM head is exact, only the bias trains, and the choice
of what trains resolves and fails as documented."""

from __future__ import annotations

import pytest
import torch
from test_stages import run_dir  # noqa: F401  (fixture: a run directory after stages 1 and 2)
from transformers import AutoModelForCausalLM

from sentiment_dpo import commands
from sentiment_dpo import files
from sentiment_dpo.config import TrainingConfig
from sentiment_dpo.errors import PipelineError
from sentiment_dpo.methods.logit_bias import add_logit_bias, fold_logit_bias, supports_logit_bias, trained_logit_bias
from sentiment_dpo.methods.token_bias import choose_trained_parameters

INPUTS = torch.tensor([[3, 17, 40, 99, 5, 250], [0, 1, 2, 3, 4, 5]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUTS).logits  # (2, 6, vocab)


def test_the_folded_head_adds_exactly_the_bias_at_every_position_and_survives_saving(tiny_policy, tmp_path):
    reference = AutoModelForCausalLM.from_pretrained(tiny_policy)
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    bias = add_logit_bias(model, "tiny")
    assert torch.equal(_logits(model), _logits(reference))  # a zero bias leaves the model as it was
    torch.manual_seed(0)
    with torch.no_grad():
        bias.theta.normal_(0.0, 0.01)
    wanted = _logits(reference) + bias.bias.detach()  # b added to every logit of every position
    assert torch.allclose(_logits(model), wanted, atol=1e-4)
    values = fold_logit_bias(model)
    assert torch.equal(values, bias.bias.detach()) and trained_logit_bias(model) is None
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.allclose(_logits(loaded), wanted, atol=1e-4)
    # only the output side changed: the input embeddings are the reference's
    assert torch.equal(loaded.get_input_embeddings().weight, reference.get_input_embeddings().weight)


def test_only_the_bias_trains(tiny_policy):
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    bias = add_logit_bias(model, "tiny")
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is bias.theta


def test_a_later_round_starts_from_the_bias_the_last_one_reached(tiny_policy):
    reference = AutoModelForCausalLM.from_pretrained(tiny_policy)
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    config = TrainingConfig(loss="sigmoid", logit_bias=True)
    choose_trained_parameters(model, config)
    first = trained_logit_bias(model)
    with torch.no_grad():
        first.theta.fill_(0.001)
    choose_trained_parameters(model, config)
    second = trained_logit_bias(model)
    assert second is not first and torch.equal(second.theta, torch.zeros_like(second.theta))
    assert torch.allclose(_logits(model), _logits(reference) + 0.001 * 500, atol=1e-4)


def test_a_model_without_a_foldable_layernorm_trains_its_weights_or_says_what_to_do(tiny_policy):
    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    with torch.no_grad():
        model.transformer.ln_f.bias.zero_()  # nothing constant to fold a bias into
    assert not supports_logit_bias(model)
    choose_trained_parameters(model, TrainingConfig(loss="sigmoid"))  # standard: every weight, nothing to fold
    assert trained_logit_bias(model) is None and all(p.requires_grad for p in model.parameters())
    with pytest.raises(PipelineError, match="--recipe token-bias trains a per-token logit bias, which needs a final "
                                            "LayerNorm with a bias .*: use --recipe standard"):
        choose_trained_parameters(model, TrainingConfig(loss="sigmoid", recipe="token-bias"))
    with pytest.raises(PipelineError, match="--no-logit-bias"):
        add_logit_bias(model, "tiny")


def test_the_token_bias_recipe_moves_only_the_logit_bias(run_dir, tiny_policy):  # noqa: F811
    assert commands.train(["sigmoid", "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                              "--recipe", "token-bias", "--bias-start", "zero"]) == 0
    model_dir = run_dir / "models" / "sigmoid"
    trained = AutoModelForCausalLM.from_pretrained(model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_policy)
    start, end = reference.state_dict(), trained.state_dict()
    changed = {name for name in start if not torch.equal(start[name], end[name])}
    assert changed == {"lm_head.weight"}, changed
    shift = _logits(trained) - _logits(reference)  # (2, 6, vocab): one vector, whatever the context
    assert shift.abs().max() > 1e-3
    assert torch.allclose(shift, shift[0, 0].expand_as(shift), atol=1e-4)
    settings = files.read_yaml(model_dir / "training.config.yaml", "")
    # the recipe and each of its parts are recorded; an explicit part (the start) beat the recipe's
    assert (settings["recipe"], settings["logit_bias"], settings["soft_labels"], settings["beta"],
            settings["bias_start"]) == ("token-bias", True, True, 0.175, "zero")
    card = (model_dir / "README.md").read_text()
    assert "A per-token logit bias trained on top of" in card.split("\n# ", 1)[1].split("\n\n", 2)[1]
    assert "Fine-tuned" not in card


def test_the_default_trains_every_weight_on_hard_labels(run_dir, tiny_policy):  # noqa: F811
    assert commands.train(["sigmoid", "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                              "--learning-rate", "0.01"]) == 0
    trained = AutoModelForCausalLM.from_pretrained(run_dir / "models" / "sigmoid").state_dict()
    start = AutoModelForCausalLM.from_pretrained(tiny_policy).state_dict()
    assert not torch.equal(start["transformer.h.0.mlp.c_fc.weight"], trained["transformer.h.0.mlp.c_fc.weight"])
    settings = files.read_yaml(run_dir / "models" / "sigmoid" / "training.config.yaml", "")
    assert (settings["recipe"], settings["logit_bias"], settings["soft_labels"], settings["beta"]) == (
        "standard", False, False, 0.5)
    card = (run_dir / "models" / "sigmoid" / "README.md").read_text()
    assert "Trained: all weights, on hard chosen/rejected labels, β 0.5 against the frozen starting policy" in card


@pytest.mark.parametrize(("argv", "logit_bias"), [(["sigmoid"], False), (["slic"], False), (["rloo"], None),
                                                  (["sigmoid", "--recipe", "token-bias"], True),
                                                  (["hinge", "--recipe", "token-bias", "--no-logit-bias"], False),
                                                  (["sigmoid", "--lora-rank", "4"], False)])
def test_what_trains_by_default(argv, logit_bias):
    from sentiment_dpo.config_parser import make_parser, parse_config

    parser = make_parser(TrainingConfig, "", positional="loss")
    assert parse_config(TrainingConfig, parser, argv, required="loss").logit_bias is logit_bias


@pytest.mark.parametrize(("argv", "message"), [
    (["rloo", "--logit-bias"], "--logit-bias does nothing for 'rloo'"),
    (["sigmoid", "--logit-bias", "--lora-rank", "4"], "a logit bias (--logit-bias, or --recipe token-bias) and "
                                                      "--lora-rank are two ways")])
def test_a_logit_bias_it_cannot_train_is_refused(run_dir, argv, message, capsys):  # noqa: F811
    assert commands.train([*argv, "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_bias_trains_against_a_reference_model_too(run_dir, tiny_policy):  # noqa: F811
    """Without precomputed reference log-probs TRL keeps a reference model beside the parametrised policy."""
    assert commands.train(["sigmoid", "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                              "--logit-bias", "--no-precompute-ref-log-probs"]) == 0
    trained = AutoModelForCausalLM.from_pretrained(run_dir / "models" / "sigmoid")
    shift = _logits(trained) - _logits(AutoModelForCausalLM.from_pretrained(tiny_policy))
    assert shift.abs().max() > 1e-3 and torch.allclose(shift, shift[0, 0].expand_as(shift), atol=1e-4)
