"""A user's own pair loss, named `path/to/file.py:function` wherever a method name is accepted.

The function is pure, as the DPO authors' `preference_loss` is (docs/methods.md#your-own-loss):

    function(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta)
        -> losses

each argument a float tensor of shape (B,), the summed log-probs of each pair's completion, `beta` a float, the
result the per-pair losses (B,). A keyword `soft_label` (the reward's probability that chosen is preferred, (B,)) is
passed only when the function's signature has it. It trains through the pair family's `DPOTrainer` subclass
(`fast_dpo.SampledTokensDPOTrainer.pair_loss`). The file is loaded with importlib from its path, its signature and
its output on a sample batch are checked before any long work, and every artifact records the source's SHA-256.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from ..user_code import UserFunction, first_line, load_function
from .registry import is_own_loss

ARGUMENTS = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps",
             "beta")
SOFT_LABEL = "soft_label"
EXAMPLE = "my_losses.py:margin_dpo"
SIGNATURE = f"def FUNCTION({', '.join(ARGUMENTS)}[, {SOFT_LABEL}]) -> losses"


@dataclass(frozen=True)
class OwnLoss:
    """A loaded loss file: where it is, what it holds, and the function."""
    spec: str
    path: Path
    function_name: str
    sha256: str
    takes_soft_label: bool
    function: Callable[..., Any]

    def record(self) -> dict[str, str]:
        """What a trained model's provenance says of it."""
        return {"file": str(self.path), "function": self.function_name, "sha256": self.sha256}


def check_methods(losses: list[str], names: list[str]) -> None:
    """Before any long work: each loss file of `losses` imports and passes its checks, and no two methods share an
    output name (`names`, one per loss)."""
    for loss in losses:
        if is_own_loss(loss):
            load_own_loss(loss)
    if len(set(names)) < len(names):
        raise PipelineError(f"two of --losses {' '.join(losses)} have one name ({', '.join(names)}): rename one of "
                            "the functions")


def load_own_loss(spec: str) -> OwnLoss:
    """Import `FILE.py:FUNCTION`, check its signature and its output on a sample batch; one-line errors. The same
    file's bytes are imported and checked once per process."""
    return _checked_loss(load_function(spec, EXAMPLE))


@functools.lru_cache(maxsize=None)
def _checked_loss(user: UserFunction) -> OwnLoss:
    spec = user.spec
    loss = OwnLoss(spec, user.path, user.function_name, user.sha256, _takes_soft_label(spec, user.function),
                   user.function)
    check_on_sample(loss)
    return loss


def _takes_soft_label(spec: str, function: Callable[..., Any]) -> bool:
    """Whether the signature has `soft_label`; refuse one the documented call cannot bind."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    takes = SOFT_LABEL in signature.parameters
    try:
        signature.bind(*ARGUMENTS, **({SOFT_LABEL: None} if takes else {}))
    except TypeError as err:
        raise PipelineError(f"{spec}: its signature {signature} does not take the call `{SIGNATURE}` ({err}); "
                            "change its parameters") from None
    return takes


def check_on_sample(loss: OwnLoss) -> None:
    """Call the function on a sample batch of 3 pairs: it must return 3 finite floats as a tensor, differentiable."""
    import torch

    generator = torch.Generator().manual_seed(0)
    chosen, rejected = (-20 - 10 * torch.rand(3, generator=generator) for _ in range(2))
    chosen.requires_grad_(True)
    rejected.requires_grad_(True)
    reference = [-20 - 10 * torch.rand(3, generator=generator) for _ in range(2)]
    soft = {SOFT_LABEL: torch.tensor([0.9, 0.6, 0.5])} if loss.takes_soft_label else {}
    checked(loss)(chosen, rejected, *reference, 0.5, **soft)


def checked(loss: OwnLoss) -> Callable[..., Any]:
    """The function, with its output checked on every call: a tensor of one finite float per pair."""
    import torch

    def pair_loss(*args: Any, **kwargs: Any) -> Any:
        batch = args[0].shape[0]
        try:
            losses = loss.function(*args, **kwargs)
        except Exception as err:  # the user's code
            raise PipelineError(f"{loss.spec} raised {type(err).__name__}: {first_line(err)}; fix the function "
                                f"(it is called as `{SIGNATURE}` with (B,) tensors)") from None
        if not isinstance(losses, torch.Tensor):
            raise PipelineError(f"{loss.spec} returned a {type(losses).__name__}, not a tensor; return the per-pair "
                                "losses as a torch tensor of shape (B,)")
        if tuple(losses.shape) != (batch,) or not losses.is_floating_point():
            raise PipelineError(f"{loss.spec} returned a {losses.dtype} tensor of shape {tuple(losses.shape)} for "
                                f"{batch} pairs; return one float loss per pair, shape ({batch},) (no .mean())")
        if not torch.isfinite(losses).all():
            raise PipelineError(f"{loss.spec} returned a non-finite loss (NaN or inf) for log-probs around "
                                f"{args[0].detach().mean().item():.1f}; make it finite for every input (e.g. "
                                "F.logsigmoid instead of log(sigmoid))")
        if not losses.requires_grad and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            raise PipelineError(f"{loss.spec} returned losses without a gradient (detached, or computed outside "
                                "torch); compute them with torch operations on the log-probs")
        return losses

    return pair_loss
