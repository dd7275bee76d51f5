"""The one home of method facts: every training method, what kind it is and which training options it reads.

Config checks, training, the pipeline and the sweep all ask this module; it imports nothing heavy, so `--help`
and config validation stay instant. The DPOTrainer loss types are TRL 1.16's (`DPOConfig.loss_type`);
`tests/test_methods.py` checks the list against the installed TRL, so an upgrade that adds or drops one fails there.
"""

from __future__ import annotations

from .errors import PipelineError

# TRL 1.16's DPOTrainer loss types, in the order of `DPOConfig.loss_type`'s help.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
# SLiC-HF (Zhao et al. 2023): hinge on the policy's own chosen-vs-rejected log-likelihood gap plus lambda times the
# chosen text's NLL, no reference model; trained as DPOTrainer's "hinge" + "sft" (`training.dpo_config`).
SLIC = "slic"
# Online RL: the policy samples its own completions of the training prompts during training (`online_rl`).
ONLINE_METHODS = ("rloo", "grpo", "online_dpo")
METHODS = (*DPO_LOSS_TYPES, SLIC, *ONLINE_METHODS)
# Preferred-FT: the chosen texts' NLL alone, which no β enters.
BETA_FREE = ("sft",)

# Training options only some methods read ("pairs": every method that trains on preference pairs through
# DPOTrainer, slic included); every other option is read by every method.
PAIRS = "pairs"
READ_BY: dict[str, tuple[str, ...] | str] = {
    "slic_lambda": (SLIC,), "num_generations": ("rloo", "grpo"), "soft_labels": ("sigmoid",),
    "group_by_prompt": PAIRS, "logit_bias": PAIRS, "bias_start": PAIRS,
}


def check_method(loss: str) -> None:
    if loss not in METHODS:
        raise PipelineError(f"unknown loss {loss!r}; choose one of: {', '.join(METHODS)}")


def is_online(loss: str) -> bool:
    return loss in ONLINE_METHODS


def trains_on_pairs(loss: str) -> bool:
    """Whether `loss` trains on preference pairs through (our subclasses of) TRL's DPOTrainer: all but the online."""
    return not is_online(loss)


def reads(loss: str, option: str) -> bool:
    """Whether method `loss` reads training option `option`."""
    methods = READ_BY.get(option, (loss,))
    if methods == PAIRS:
        return trains_on_pairs(loss)
    return loss in methods
