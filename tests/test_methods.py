"""The method registry: its loss list is the installed TRL's, unknown methods are refused, option facts hold."""

import dataclasses
import re

import pytest

from sentiment_dpo.errors import PipelineError
from sentiment_dpo.methods import DPO_LOSS_TYPES, METHODS, check_method, is_online, reads, trains_on_pairs


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
