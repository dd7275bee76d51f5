"""The one home of method facts: every training method, what kind it is and which training options it reads.

Config checks, training, the pipeline and the sweep all ask this module; it imports nothing heavy, so `--help`
and config validation stay instant. The DPOTrainer loss types are those of the pinned TRL (`DPOConfig.loss_type`);
`tests/test_methods.py` checks the list against the installed TRL, so an upgrade that adds or drops one fails there.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import version

from ..errors import PipelineError
from ..user_code import function_spec_parts, is_function_spec

# The installed TRL's version, for messages (read from its metadata: importing TRL would make --help slow).
TRL_VERSION = version("trl")
# The DPOTrainer loss types, in the order of `DPOConfig.loss_type`'s help.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
# SLiC-HF (Zhao et al. 2023): hinge on the policy's own chosen-vs-rejected log-likelihood gap plus lambda times the
# chosen text's NLL, no reference model; trained as DPOTrainer's "hinge" + "sft" (`pair_methods.dpo_config`).
SLIC = "slic"
# Online RL: the policy samples its own completions of the training prompts during training (`online_rl`).
ONLINE_METHODS = ("rloo", "grpo", "online_dpo")
METHODS = (*DPO_LOSS_TYPES, SLIC, *ONLINE_METHODS)
# Preferred-FT: the chosen texts' NLL alone, which no β enters.
BETA_FREE = ("sft",)

# TRL reads `label_smoothing` for these loss types only (its sigmoid, hinge and ipo ignore it).
LABEL_SMOOTHING_LOSSES = ("robust", "exo_pair", "aot", "aot_unpaired")
# EXO needs label smoothing > 0; its paper recommends 1e-3.
EXO_DEFAULT_LABEL_SMOOTHING = 1e-3
PAIR_METHODS = tuple(m for m in METHODS if m not in ONLINE_METHODS)

# Training options only some methods read, and why the others do not; every other option is read by every method.
# An option set for a method that does not read it is refused (`check_reads`), never ignored.
READ_BY: dict[str, tuple[tuple[str, ...], str]] = {
    "beta": (tuple(m for m in METHODS if m not in BETA_FREE), "sft (Preferred-FT) is the chosen texts' NLL, with no β"),
    "label_smoothing": (LABEL_SMOOTHING_LOSSES,
                        f"TRL {TRL_VERSION} reads it only for {', '.join(LABEL_SMOOTHING_LOSSES)}"),
    "slic_lambda": ((SLIC,), "it weights slic's NLL term"),
    "num_generations": (("rloo", "grpo"), "only rloo and grpo sample several completions per prompt"),
    "soft_labels": (("sigmoid",), "soft labels are defined for the sigmoid loss only"),
    "recipe": (PAIR_METHODS, "the online methods train on their own samples, not on pairs"),
    "group_by_prompt": (PAIR_METHODS, "the online methods train on prompts, not pairs"),
    "gradient_accumulation_steps": (PAIR_METHODS, "the online methods' steps are TRL's generation batches"),
    "logit_bias": (PAIR_METHODS, "the online methods train their weights (or LoRA)"),
    "bias_start": (PAIR_METHODS, "the online methods train no logit bias"),
    "precompute_ref_log_probs": (tuple(m for m in PAIR_METHODS if m != SLIC),
                                 "slic has no reference, and the online methods score theirs every step"),
}

# What trains, and on which labels, when the user names only a method. "standard": the method as its paper and TRL
# define it (every weight fine-tuned on hard labels against the frozen starting policy). "token-bias": the
# project's measured recipe (a per-token logit bias started from the reward's token scores, soft labels for
# sigmoid; docs/methods.md, which also says how each β was chosen). Each part stays its own option; an explicit
# option beats the recipe.
STANDARD, TOKEN_BIAS = "standard", "token-bias"
RECIPES: dict[str, dict[str, object]] = {
    STANDARD: {"logit_bias": False, "soft_labels": False, "beta": 0.5},
    TOKEN_BIAS: {"logit_bias": True, "bias_start": "reward", "soft_labels": True, "beta": 0.175},
}
# β of the online methods (their KL coefficient), whatever the recipe.
ONLINE_BETA = 0.3


# A user's pair loss from a file, `FILE.py:FUNCTION` (methods/own_loss.py): a pair method that reads β and the
# options of what trains and how pairs are batched; not the options of TRL's own loss types.
OWN_LOSS_READS = ("beta", "recipe", "group_by_prompt", "gradient_accumulation_steps", "logit_bias", "bias_start",
                  "precompute_ref_log_probs")
OWN_LOSS_REASON = "a loss from a file gets the log-probs, β and, where its signature has it, the soft label"


def is_own_loss(loss: str) -> bool:
    """Whether `loss` names a user's loss file (`FILE.py:FUNCTION`) rather than a built-in method."""
    return is_function_spec(loss)


def own_loss_parts(loss: str) -> tuple[str, str]:
    """(file, function) of `FILE.py:FUNCTION`, or a one-line error."""
    return function_spec_parts(loss, "my_losses.py:margin_dpo")


def method_name(loss: str, name: str | None = None) -> str:
    """The name a method's outputs carry (models/NAME, results/NAME, tables, plots): a built-in method's own, a loss
    file's function name or `name` (--method-name), which must not be a built-in method's."""
    if not is_own_loss(loss):
        if name is not None:
            raise PipelineError(f"--method-name names a loss from a file; {loss!r} is built in: remove --method-name")
        return loss
    name = name or own_loss_parts(loss)[1]
    if name in METHODS or name == "reference" or not name.replace("-", "_").isidentifier():
        raise PipelineError(f"the name {name!r} of {loss} is {'a built-in method' if name in METHODS else 'taken'}"
                            f"{'' if name.replace('-', '_').isidentifier() else ' or not a plain name'}; pass "
                            "--method-name with another (letters, digits, _ and -)")
    return name


def check_method(loss: str) -> None:
    if is_own_loss(loss):
        own_loss_parts(loss)
        return
    if loss not in METHODS:
        raise PipelineError(f"unknown loss {loss!r}; choose one of: {', '.join(METHODS)}, or your own as "
                            "FILE.py:FUNCTION")


def is_online(loss: str) -> bool:
    return loss in ONLINE_METHODS


def trains_on_pairs(loss: str) -> bool:
    """Whether `loss` trains on preference pairs through (our subclasses of) TRL's DPOTrainer: all but the online."""
    return not is_online(loss)


def reads(loss: str, option: str) -> bool:
    """Whether method `loss` reads training option `option`."""
    if is_own_loss(loss):
        return option not in READ_BY or option in OWN_LOSS_READS
    return option not in READ_BY or loss in READ_BY[option][0]


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def check_reads(loss: str, option: str) -> None:
    """Refuse an option `loss` does not read: one line naming why and the fix."""
    if not reads(loss, option):
        reason = OWN_LOSS_REASON if is_own_loss(loss) else READ_BY[option][1]
        raise PipelineError(f"{flag(option)} does nothing for {loss!r} ({reason}): remove it")


def check_read_by_some(options: Iterable[str], losses: list[str], where: str) -> None:
    """Refuse an option that none of `losses` reads (a pipeline or sweep passes each method only what it reads)."""
    for option in options:
        if not any(reads(loss, option) for loss in losses):
            raise PipelineError(f"{where} sets {flag(option)}, which none of {', '.join(losses)} reads "
                                f"({READ_BY[option][1]}): remove it")


# Why a method's population minimiser is not the KL-regularised optimum π_ref·exp(r/β) the ceiling draws.
OTHER_OBJECTIVE = {
    "sigmoid": "hard labels push the margin up without end",
    "ipo": "a fixed margin 1/(2β) per pair",
    "hinge": "any margin past 1/β",
    SLIC: "a hinge on its own likelihood gap, no reference",
    "sft": "the chosen texts' NLL",
    "online_dpo": "hard-label DPO on its own pairs",
}


def ceiling_objective(loss: str, soft_labels: bool | None = None) -> str:
    """Whether `loss`'s population minimiser is the policy the ceiling draws, in a few words (docs/methods.md)."""
    if is_own_loss(loss):
        return "not known (your own loss)"
    if loss == "sigmoid" and soft_labels:
        return "yes (soft labels)"
    if loss in ("rloo", "grpo"):
        return "yes, up to its KL estimator"
    return f"no: {OTHER_OBJECTIVE.get(loss, 'TRL defines another objective')}"


def recipe_defaults(recipe: str, loss: str) -> dict[str, object]:
    """The recipe's part of the options `loss` reads (β: the online methods' own)."""
    parts = dict(RECIPES[recipe]) | ({"beta": ONLINE_BETA} if is_online(loss) else {})
    return {name: value for name, value in parts.items() if reads(loss, name)}
