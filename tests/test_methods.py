"""The method registry: its loss list is the installed TRL's, unknown methods are refused, option facts hold."""

import dataclasses
import re

import pytest

from sentiment_dpo.errors import PipelineError
from sentiment_dpo.methods.registry import DPO_LOSS_TYPES, METHODS, check_method, is_online, reads, trains_on_pairs


def test_the_dpo_loss_types_are_the_installed_trls():
    from trl import DPOConfig

    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    assert list(DPO_LOSS_TYPES) == re.findall(r"`'([a-z_]+)'`", help_text)


def test_unknown_methods_are_refused_with_the_list():
    check_method("hinge")
    with pytest.raises(PipelineError, match="unknown loss 'dpo'; choose one of: sigmoid, hinge"):
        check_method("dpo")
    assert METHODS[-3:] == ("rloo", "grpo", "online_dpo")


def test_which_method_reads_which_option():
    assert is_online("rloo") and not is_online("slic") and trains_on_pairs("slic") and trains_on_pairs("sft")
    assert reads("slic", "slic_lambda") and not reads("sigmoid", "slic_lambda")
    assert reads("grpo", "num_generations") and not reads("online_dpo", "num_generations")
    assert reads("sigmoid", "soft_labels") and not reads("hinge", "soft_labels")
    assert reads("ipo", "logit_bias") and not reads("rloo", "logit_bias")
    assert reads("rloo", "learning_rate")  # an option no entry restricts: every method reads it


def test_a_preset_carries_its_own_training_defaults(tmp_path):
    """A SmolLM2 policy from stage 1 trains the preset's LoRA at its batch size, not 135M weights at batch 448;
    an explicit option still wins, and the embedded policy keeps the standard defaults."""
    from sentiment_dpo.config import TrainingConfig
    from sentiment_dpo.config_parser import make_parser, parse_config
    from sentiment_dpo.stages.pipeline import PipelineConfig, training_config
    from sentiment_dpo.stages.train import defaults_from_run

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "generations.config.yaml").write_text("policy: smollm2\npreset: embedded\n")

    def parsed(*argv: str) -> TrainingConfig:
        return parse_config(TrainingConfig, make_parser(TrainingConfig, "", positional="loss"),
                            [*argv, "--run-dir", str(tmp_path)], required="loss", defaults=defaults_from_run)

    smol = parsed("sigmoid")
    assert (smol.lora_rank, smol.batch_size, smol.logit_bias, smol.group_by_prompt) == (16, 32, False, False)
    assert parsed("sigmoid", "--batch-size", "8").batch_size == 8
    rloo = parsed("rloo")  # an online method takes the preset's options it reads, and no pair option
    assert (rloo.lora_rank, rloo.batch_size, rloo.group_by_prompt) == (16, 32, None)
    assert training_config(PipelineConfig(preset="smollm2"), "hinge").lora_rank == 16
    embedded = training_config(PipelineConfig(), "sigmoid")
    assert (embedded.lora_rank, embedded.batch_size, embedded.beta) == (0, 448, 0.5)


def test_the_pipeline_gives_each_method_what_it_reads_and_refuses_what_none_reads():
    from sentiment_dpo.stages.pipeline import PipelineConfig, training_config

    config = PipelineConfig(losses=["sigmoid", "hinge"], recipe="token-bias", training={"soft_labels": False})
    sigmoid, hinge = (training_config(config, loss) for loss in config.losses)
    assert (sigmoid.recipe, sigmoid.logit_bias, sigmoid.soft_labels) == ("token-bias", True, False)
    assert (hinge.recipe, hinge.logit_bias, hinge.soft_labels, hinge.bias_start) == ("token-bias", True, None,
                                                                                      "reward")
    with pytest.raises(PipelineError, match="the pipeline sets --slic-lambda, which none of sigmoid, hinge reads"):
        training_config(PipelineConfig(training={"slic_lambda": 0.5}), "sigmoid")
    with pytest.raises(PipelineError, match="the pipeline sets --recipe, which none of rloo reads"):
        training_config(PipelineConfig(losses=["rloo"], recipe="token-bias"), "rloo")
