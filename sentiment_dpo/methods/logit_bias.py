"""Training only a per-token logit bias: the policy π(a|s) ∝ π_ref(a|s)·exp(b_a) at every step, b one number per
vocabulary token.

Why: the sentiment reward is largely lexical, and a vocabulary-sized bias learnt from a few thousand scored samples
generalises to new prompts far better than an update of every weight, which also fits the particular sampled texts
(docs/methods.md, studies/logit_bias/README.md at commit e3d212a). With the same 8,000 samples, DPO on the bias pays
about half the KL overhead of DPO on all the weights.

How it stays a plain model: a GPT-2 style LM head has no bias, but the final LayerNorm centres its input, so with
u = 1/γ (γ, β_f the LayerNorm's weight and bias) every normalised hidden state h satisfies h·u = Σ_k β_f,k/γ_k =: c,
a constant. An untied head W + b·uᵀ/c therefore adds exactly b to every logit; the trained policy is saved as the
same architecture with that head, and later stages load it with `from_pretrained` like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.utils import parametrize

from ..errors import PipelineError

# The bias is trained as LEARNING_RATE_MULTIPLIER·θ: Adam moves θ by about --learning-rate a step, so the default
# learning rate for the weights (2e-4) moves each token's bias by about 0.1 nats a step, the rate at which the
# bias reached the ceiling's neighbourhood within 2 epochs (studies/logit_bias/README.md at commit e3d212a). One
# learning rate then serves every parameterisation, the sweep's learning-rate axis included.
LEARNING_RATE_MULTIPLIER = 500.0
# |c| below this would make the fold's uᵀh / c amplify rounding error.
MIN_FOLD_CONSTANT = 1e-3


class LogitBias(torch.nn.Module):
    """The parametrisation of the LM head's weight: W + (multiplier·θ)·uᵀ/c, θ the only trainable parameter."""

    def __init__(self, vocab_size: int, direction: torch.Tensor, constant: float) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(vocab_size, dtype=direction.dtype, device=direction.device))
        self.register_buffer("direction", direction)
        self.constant = constant
        self.enabled = True  # off: the head is the starting policy's (the DPO reference), whatever the bias holds

    @property
    def bias(self) -> torch.Tensor:
        return LEARNING_RATE_MULTIPLIER * self.theta  # (vocab,)

    @torch.no_grad()
    def start_from(self, bias: torch.Tensor) -> None:
        """Set the bias to `bias` (vocab,) before training."""
        self.theta.copy_(bias.to(self.theta) / LEARNING_RATE_MULTIPLIER)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # (vocab, hidden)
        if not self.enabled:
            return weight
        return weight + torch.outer(self.bias, self.direction) / self.constant


def _final_norm(model) -> torch.nn.Module | None:
    base = getattr(model, model.base_model_prefix, None)
    return getattr(base, "ln_f", None)


def fold_direction(model) -> tuple[torch.Tensor, float] | None:
    """(u, c) with h·u = c for every output of the model's final LayerNorm, or None when the model has no such
    direction (no final LayerNorm with a bias, e.g. RMSNorm, or a constant too close to 0)."""
    norm = _final_norm(model)
    if not isinstance(norm, torch.nn.LayerNorm) or norm.weight is None or norm.bias is None:
        return None
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        return None
    gamma, shift = norm.weight.detach(), norm.bias.detach()
    if bool((gamma.abs() < 1e-6).any()):
        return None
    direction = 1 / gamma
    constant = float((shift * direction).sum())
    if abs(constant) < MIN_FOLD_CONSTANT:
        return None
    return direction.clone(), constant


def supports_logit_bias(model) -> bool:
    return fold_direction(model) is not None


def add_logit_bias(model, spec: str) -> LogitBias:
    """Freeze every weight of `model` and give its LM head a trainable logit bias (zero: the model is unchanged)."""
    found = fold_direction(model)
    if found is None:
        raise PipelineError(f"--logit-bias needs a final LayerNorm with a bias to fold the bias into (GPT-2 style); "
                            f"{spec} has none: use --no-logit-bias (all weights) or --lora-rank R")
    direction, constant = found
    head = model.get_output_embeddings()
    # the head is usually tied to the input embeddings: untie it, so the bias changes the output side only
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    bias = LogitBias(head.weight.shape[0], direction, constant)
    parametrize.register_parametrization(head, "weight", bias)
    return bias


def trained_logit_bias(model) -> LogitBias | None:
    head = model.get_output_embeddings()
    if head is None or not parametrize.is_parametrized(head, "weight"):
        return None
    return next((p for p in head.parametrizations.weight if isinstance(p, LogitBias)), None)


@contextmanager
def bias_disabled(model) -> Iterator[None]:
    """`model` without its trained logit bias for the body (any start value included): the starting policy, which
    DPO's reference log-probs must come from. A model without a bias is left as it is."""
    bias = trained_logit_bias(model)
    if bias is None:
        yield
        return
    bias.enabled = False
    try:
        yield
    finally:
        bias.enabled = True


def fold_logit_bias(model) -> torch.Tensor | None:
    """Replace the parametrised head by its plain weight W + b·uᵀ/c (a model `save_pretrained` writes as is);
    returns the bias b, or None when `model` trains no logit bias."""
    bias = trained_logit_bias(model)
    if bias is None:
        return None
    values = bias.bias.detach().clone()
    parametrize.remove_parametrizations(model.get_output_embeddings(), "weight", leave_parametrized=True)
    return values
