"""TRL's `DPOTrainer` on the exact sampled token sequences, with a faster path for CPU and small models.

`SampledTokensDPOTrainer` takes datasets that are already token ids (`training.pairs_dataset`): TRL's own
preparation appends EOS to every completion and re-tokenizes prompt + completion. `FastDPOTrainer` adds two
changes, both measured in `benchmarks/bench_training.py`:

- A dense log-prob head. TRL replaces the model's LM head with a tiled kernel that never materialises the
  logits and recomputes them in the backward pass; off Triton devices it also scores every position,
  prompt and padding included. For the short sequences of this project the logits of the completion
  positions are small (tokens x vocab), so computing them once, only where a label is, is cheaper.
  On CUDA the Triton kernel is kept: there the memory saving matters and the kernel is fast.
- The reference log-probs are computed once in one length-sorted pass and added as dataset columns,
  shared across processes like the sampling stages do, instead of TRL's pass and its Arrow cache file.
- Each distinct sequence of a batch is computed once. With `group_by_prompt` a batch holds every pair of a few
  prompts (all 28 pairs of 8 samples share 8 texts), so the dense head runs the model on the texts, not the pairs.
"""

from __future__ import annotations

import os
import random
import types
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer
from trl.trainer.utils import FusedCausalLMOutput

from ..distributed import is_main_process, map_length_sorted, on_every_process
from ..library_warnings import CHECKPOINTING_DEPRECATION, silenced
from .logit_bias import bias_disabled
from .reference_logps_cache import load as load_reference_logps
from .reference_logps_cache import reference_record
from .reference_logps_cache import store as store_reference_logps


def _logit_metrics(logits: torch.Tensor, targets: torch.Tensor, wanted: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """TRL's per-token training metrics read from the logits (labelled tokens, vocab), when `wanted`."""
    metrics = {}
    with torch.no_grad():
        if "mean_logits" in wanted:
            metrics["mean_logits"] = logits.mean(-1)
        if "is_top1" in wanted:
            metrics["is_top1"] = logits.argmax(-1) == targets
    return metrics


def _log_prob_outputs(log_softmax: torch.Tensor, targets: torch.Tensor,
                      wanted: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """log_probs of the targets, and the entropy / log Σp² fields when `wanted`, from the log-softmax."""
    outputs = {"log_probs": log_softmax.gather(-1, targets[:, None]).squeeze(-1)}
    if "entropy" in wanted or "log_sum_sq_probs" in wanted:
        entropy, log_sum_sq = _distribution_stats(log_softmax.detach(), "log_sum_sq_probs" in wanted)
        outputs["entropy"] = entropy
        if log_sum_sq is not None:
            outputs["log_sum_sq_probs"] = log_sum_sq
    return outputs


def add_dense_lm_head(model, outputs: tuple[str, ...] = ("log_probs",)) -> None:
    """Make `model(..., labels=labels, fused_lm_head=True)` return TRL's `FusedCausalLMOutput`, computed from the
    full logits of the labelled positions (labels != -100) only. Other calls go to the model's own forward.

    `outputs`: the per-token fields to compute (as TRL's `add_fused_lm_head`; the others are None). It is kept in
    `model.dense_head_outputs`, so a pass that needs fewer (the reference log-probs) can narrow it.

    Identical rows (the same text in several pairs of a batch) are run through the model once; their outputs are
    copied back to every row, so values and gradients are those of the full batch."""
    original_forward = type(model).forward.__get__(model)
    model.dense_head_outputs = outputs

    def dense_forward(self, *args, fused_lm_head: bool = False, labels=None, shift_labels=None,
                      num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            if labels is not None:
                kwargs["labels"] = labels
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        rows = labels if labels is not None else shift_labels
        first, inverse = _distinct_rows([rows] + [v for v in (*args, *kwargs.values()) if _per_row(v, rows)])
        args = tuple(v[first] if _per_row(v, rows) else v for v in args)
        kwargs = {k: v[first] if _per_row(v, rows) else v for k, v in kwargs.items()}
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:  # token t is predicted at position t - 1
            hidden, shift_labels = hidden[:, :-1], labels[first, 1:]
        else:
            shift_labels = shift_labels[first]
        mask = shift_labels != -100
        logits = self.get_output_embeddings()(hidden[mask]).float()  # (labelled tokens, vocab)
        targets = shift_labels[mask]
        per_token = _logit_metrics(logits, targets, self.dense_head_outputs)
        log_softmax = torch.log_softmax(logits, dim=-1)
        del logits  # log_softmax's backward needs only its output
        per_token |= _log_prob_outputs(log_softmax, targets, self.dense_head_outputs)
        # Back to (batch, positions) with zeros where there is no label, as TRL's head returns them, and to every
        # row of the batch.
        full = {name: value.new_zeros(mask.shape).masked_scatter(mask, value)[inverse]
                for name, value in per_token.items()}
        mask = mask[inverse]
        loss = -full["log_probs"].sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None
                                          else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, label_mask=mask, **full)

    model.forward = types.MethodType(dense_forward, model)


def _per_row(value: Any, rows: torch.Tensor) -> bool:
    return torch.is_tensor(value) and value.dim() == 2 and value.size(0) == rows.size(0)


def _distinct_rows(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, inverse): the index of the first of each distinct row (rows compared across all `tensors`, each
    (batch, positions)), and for every row the position of its distinct row in `first`."""
    rows = torch.cat([t.long() for t in tensors], dim=1)
    _, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), rows.size(0), dtype=torch.long, device=rows.device)
    first = first.scatter_reduce(0, inverse, torch.arange(rows.size(0), device=rows.device), "amin")
    order = first.argsort()  # distinct rows in batch order
    return first[order], order.argsort()[inverse]


def _distribution_stats(log_softmax: torch.Tensor, with_sum_sq: bool = True,
                        rows: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Entropy and (if asked for) log(sum p^2) of each row's distribution, a few rows at a time (bounded
    temporaries)."""
    entropy, sum_sq = [], []
    for chunk in log_softmax.split(rows):
        probs = chunk.exp()
        entropy.append(-(probs * chunk).sum(-1))
        if with_sum_sq:
            sum_sq.append((probs * probs).sum(-1))
    if not entropy:  # no labelled token at all
        return log_softmax.new_zeros(0), log_softmax.new_zeros(0) if with_sum_sq else None
    return torch.cat(entropy), torch.cat(sum_sq).log() if with_sum_sq else None


def use_dense_head(model) -> bool:
    return next(model.parameters()).device.type != "cuda"


def _base(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def use_fused_gelu(model) -> None:
    """Swap GPT-2's `NewGELUActivation` (the tanh GELU written as seven element-wise ops, each with its own backward)
    for transformers' `GELUTanh`: PyTorch's fused kernel of the same formula, equal up to float rounding. The
    activation has no weights, so the saved model is unchanged."""
    from transformers.activations import GELUTanh, NewGELUActivation

    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is NewGELUActivation:
                setattr(parent, name, GELUTanh())


# The per-token fields TRL's DPO loss and metrics read (as TRL asks its own head for them; log_sum_sq_probs only
# for WPO weighting).
TRAINING_OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")


TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
# Optional dataset column: the probability that the chosen side is preferred (a soft label).
PREFERENCE = "preference"
# The TRL internals the fast path overrides or calls, and the fields of the head output it builds.
TRL_INTERNALS = ("_precompute_ref_logps", "compute_ref_log_probs", "_prepare_dataset")
HEAD_FIELDS = ("loss", "label_mask", "log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
# Launch setups the fast path has not been tested under: accelerate sets these for DeepSpeed and FSDP, whose
# parameters may not be on the device yet when the fast path's own reference pass runs.
UNTESTED_SETUPS = ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP")


def token_columns(dataset) -> tuple[list, list, list]:
    """The prompt, chosen and rejected token ids of every pair, as lists: a `datasets.Dataset` read column-wise
    at once, which costs far less per pair than reading it row by row (each row is a formatted dict)."""
    data = dataset.select_columns(list(TOKEN_COLUMNS)).to_dict()
    return data["prompt_ids"], data["chosen_ids"], data["rejected_ids"]


def check_trl_internals() -> None:
    """Fail loudly, in one line, if the installed TRL lacks what the fast path relies on."""
    import dataclasses

    missing = [name for name in TRL_INTERNALS if not hasattr(DPOTrainer, name)]
    fields = ({f.name for f in dataclasses.fields(FusedCausalLMOutput)}
              if dataclasses.is_dataclass(FusedCausalLMOutput) else set())
    missing += [f"FusedCausalLMOutput.{name}" for name in HEAD_FIELDS if name not in fields]
    if missing:
        from ..errors import PipelineError

        raise PipelineError(f"the installed TRL lacks {', '.join(missing)}, which the fast trainer needs; install "
                            "the pinned version (pip install -r requirements.txt)")


def dpo_trainer_class() -> type:
    """FastDPOTrainer where it has been tested; TRL's own path on the sampled tokens under DeepSpeed or FSDP."""
    if any(os.environ.get(name, "").lower() in ("1", "true") for name in UNTESTED_SETUPS):
        return SampledTokensDPOTrainer
    check_trl_internals()
    return FastDPOTrainer


class PromptGroupedSampler(torch.utils.data.Sampler):
    """Every pair once per epoch, each prompt's pairs one after another, the prompts in a random order drawn from
    `seed` and the epoch: consecutive batches hold whole prompts' pairs."""

    def __init__(self, prompts: list[tuple[int, ...]], seed: int) -> None:
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, prompt in enumerate(prompts):
            groups[prompt].append(index)
        self.groups = list(groups.values())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(len(group) for group in self.groups)

    def __iter__(self):
        order = list(range(len(self.groups)))
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        for group in order:
            yield from self.groups[group]


def soft_label_sigmoid_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                            reference_chosen_logps: torch.Tensor, reference_rejected_logps: torch.Tensor,
                            beta: float, soft_label: torch.Tensor) -> torch.Tensor:
    """DPO's sigmoid loss with a soft label, per pair: −q·log σ(βΔ) − (1 − q)·log σ(−βΔ), with
    Δ = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x)) (Rafailov et al. 2023, eq. 7, with
    the Bradley-Terry label q = σ(r_w − r_l) in place of 1; q = 1 is DPO's loss).

    Its minimiser is the finite margin βΔ = logit(q), which the KL-regularised optimum π_ref·exp(r/β) attains; the
    hard label keeps pushing Δ up without end. Every argument but `beta` is (B,): summed log-probs of each pair's
    completion and q; returns the (B,) losses."""
    x = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    return -soft_label * F.logsigmoid(x) - (1 - soft_label) * F.logsigmoid(-x)


class SampledTokensDPOTrainer(DPOTrainer):
    """`DPOTrainer` that trains on a dataset of token ids as it is (see the module docstring); a text dataset
    goes through TRL's own preparation. `group_by_prompt`: batches of whole prompts' pairs (`PromptGroupedSampler`)
    instead of pairs in random order. `reference_free`: every reference log-prob is 0 (slic), so the losses see the
    policy's own log-likelihoods; it needs `precompute_ref_log_probs`, and no reference pass runs.

    `pair_loss`: a pure function of the pairs' summed log-probs, (policy chosen, policy rejected, reference chosen,
    reference rejected, beta[, soft_label]) -> (B,) losses, trained instead of TRL's loss types (TRL's `_compute_loss`
    has its loss types inside). With a `PREFERENCE` column (soft labels) it is `soft_label_sigmoid_loss`.
    """

    def __init__(self, *args: Any, group_by_prompt: bool = False, reference_free: bool = False,
                 pair_loss: Callable[..., torch.Tensor] | None = None, **kwargs: Any) -> None:
        self.group_by_prompt = group_by_prompt
        self.reference_free = reference_free
        self.pair_loss = pair_loss
        super().__init__(*args, **kwargs)
        if reference_free and not self.args.precompute_ref_log_probs:
            raise ValueError("reference_free needs precompute_ref_log_probs: TRL's per-step pass would use a model")
        if self.train_dataset is not None and PREFERENCE in self.train_dataset.column_names:
            if pair_loss is None:  # TRL's loss types have no per-pair label
                if self.loss_types != ["sigmoid"]:
                    raise ValueError("soft labels are defined for the plain sigmoid loss only")
                self.pair_loss = soft_label_sigmoid_loss
            self.data_collator = _keep_preference(self.data_collator)
        if self.pair_loss is not None and (self.f_divergence_type != "reverse_kl" or self.ld_alpha is not None
                                           or self.use_weighting or self.aux_loss_enabled):
            raise ValueError("a pair loss reads summed log-probs: no f-divergence, ld_alpha, weighting or aux loss")

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name: str):
        if all(column in dataset.column_names for column in TOKEN_COLUMNS):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        if self.reference_free:
            zeros = [0.0] * len(dataset)
            return dataset.add_column("ref_chosen_logps", zeros).add_column("ref_rejected_logps", zeros)
        return self._reference_pass(dataset, name, batch_size)

    def _reference_pass(self, dataset, name: str, batch_size: int):
        """`dataset` with the frozen starting model's log-probs of each side as columns (TRL's own pass)."""
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _get_train_sampler(self, train_dataset=None):
        if not self.group_by_prompt:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return PromptGroupedSampler([tuple(ids) for ids in dataset["prompt_ids"]], self.args.seed)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if PREFERENCE not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, PREFERENCE]

    def compute_ref_log_probs(self, model, inputs):
        """The reference's log-probs of a batch. Without a separate reference model TRL scores the reference
        through the policy itself (`precompute_ref_log_probs`, or LoRA with its adapters off): its trained logit
        bias, start value included, is switched off, so the reference is the starting policy either way."""
        inputs = {k: v for k, v in inputs.items() if k != PREFERENCE}
        # TRL reads transformers' deprecated `is_gradient_checkpointing` in its reference pass
        with bias_disabled(_base(self.accelerator.unwrap_model(model))), silenced(CHECKPOINTING_DEPRECATION):
            return super().compute_ref_log_probs(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.pair_loss is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = self._pair_loss(model, inputs)
        return (loss, outputs) if return_outputs else loss

    def _pair_loss(self, model, inputs) -> tuple[torch.Tensor, Any]:
        """The mean of `pair_loss` over the batch's pairs, from one forward pass of the policy on [chosen; rejected]
        as TRL's `_compute_loss` makes it, and TRL's logged reward and log-prob metrics."""
        preference = inputs.pop(PREFERENCE, None)
        completion_mask = inputs["completion_mask"]
        model_kwargs = {k: v for k, v in inputs.items()
                        if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True, use_cache=False)
        mask = completion_mask[:, 1:]  # (2B, T - 1): the positions predicting a completion token
        chosen, rejected = outputs.log_probs[:, -mask.size(1):].sum(dim=1).chunk(2)  # (B,) each
        if "ref_chosen_logps" in inputs:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            with torch.no_grad():
                ref_chosen, ref_rejected = self.compute_ref_log_probs(
                    self.ref_model if self.ref_model is not None else model, inputs)
        extra = {} if preference is None else {"soft_label": preference.to(chosen.dtype)}
        losses = self.pair_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta, **extra)
        self._log_pair_metrics(chosen, rejected, ref_chosen, ref_rejected, outputs.entropy[:, -mask.size(1):], mask)
        return losses.mean(), outputs

    def _log_pair_metrics(self, chosen, rejected, ref_chosen, ref_rejected, entropy, mask) -> None:
        """TRL's entropy, implicit-reward and log-prob metrics, under TRL's names."""
        metrics = self._metrics["train" if self.model.training else "eval"]
        gather = self.accelerator.gather_for_metrics
        tokens = gather(mask.sum()).sum()
        metrics["entropy"].append((gather((entropy.detach() * mask).sum()).sum() / tokens.clamp(min=1)).item())
        chosen_rewards = self.beta * (chosen - ref_chosen).detach()
        rejected_rewards = self.beta * (rejected - ref_rejected).detach()
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected.detach()).mean().item())


def _keep_preference(collate):
    """TRL's collator, with the `PREFERENCE` values of the batch added as a tensor."""

    def collate_with_preference(examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(examples)
        batch[PREFERENCE] = torch.tensor([example[PREFERENCE] for example in examples], dtype=torch.float32)
        return batch

    return collate_with_preference


class FastDPOTrainer(SampledTokensDPOTrainer):
    """`DPOTrainer` on the sampled tokens, with the dense log-prob head off CUDA, a project-side reference log-prob
    pass, and PyTorch's fused GELU (`use_fused_gelu`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._dense_heads_added = False
        for model in (kwargs.get("model"), kwargs.get("ref_model")):
            if isinstance(model, torch.nn.Module):  # before TRL's __init__, which runs the reference pass
                use_fused_gelu(model)
        super().__init__(*args, **kwargs)
        self._add_dense_heads()

    def _add_dense_heads(self) -> None:
        # TRL patches the heads in its __init__, before it precomputes: ours go on top, once.
        if self._dense_heads_added or not use_dense_head(self.model):
            return
        add_dense_lm_head(_base(self.model), TRAINING_OUTPUTS + (("log_sum_sq_probs",) if self.use_weighting else ()))
        if self.ref_model is not None:
            add_dense_lm_head(_base(self.ref_model))  # log-probs only, like TRL's reference head
        self._dense_heads_added = True

    def _reference_computation(self, model) -> dict[str, Any]:
        """The settings of the reference pass, besides model, texts and batch size, that its numbers depend on."""
        device = self.accelerator.device
        return {"pad_token_id": self.processing_class.pad_token_id, "max_length": self.args.max_length,
                "truncation_mode": self.args.truncation_mode, "pad_to_multiple_of": self.args.pad_to_multiple_of,
                "dense_head": use_dense_head(model), "ld_alpha": self.ld_alpha,
                "autocast": str(self.accelerator.mixed_precision),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type}

    def _reference_pass(self, dataset, name: str, batch_size: int):
        """`dataset` with `ref_chosen_logps` / `ref_rejected_logps` columns from the frozen starting model, each
        distinct text scored once; the log-probs come from the user cache where the same pass ran before
        (`reference_logps_cache`), and `reference_logps_key` names its entry."""
        self._add_dense_heads()
        model = self.ref_model or self.model
        texts: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}  # (prompt, completion) -> its index

        def index(prompt: list[int], completion: list[int]) -> int:
            return texts.setdefault((tuple(prompt), tuple(completion)), len(texts))

        sides = [(index(prompt, chosen), index(prompt, rejected))
                 for prompt, chosen, rejected in zip(*token_columns(dataset))]
        ordered = list(texts)  # in first appearance, the order their log-probs come in
        record = reference_record(model, ordered, batch_size, self._reference_computation(model))
        self.reference_logps_key = record["key"]
        # one process reads the cache for all: processes that disagreed (another run writing the entry meanwhile)
        # would not all join the pass's collective gather
        logps = on_every_process(load_reference_logps(record) if is_main_process() else None)
        if logps is None:
            logps = self._score_texts(model, ordered, batch_size)
            if is_main_process():
                store_reference_logps(record, logps)
        return (dataset.add_column("ref_chosen_logps", [logps[chosen] for chosen, _ in sides])
                .add_column("ref_rejected_logps", [logps[rejected] for _, rejected in sides]))

    def _score_texts(self, model, texts: list[tuple[tuple[int, ...], tuple[int, ...]]],
                     batch_size: int) -> list[float]:
        """The reference log-prob of each (prompt ids, completion ids), batched by length across processes."""
        device = self.accelerator.device
        # one text as both sides of a row: the dense head runs identical rows once
        rows = [{"prompt_ids": list(prompt), "chosen_ids": list(ids), "rejected_ids": list(ids)}
                for prompt, ids in texts]
        lengths = [len(prompt) + len(ids) for prompt, ids in texts]
        head = _base(model)
        training_outputs = getattr(head, "dense_head_outputs", None)
        if training_outputs is not None:  # the reference pass needs the log-probs alone
            head.dense_head_outputs = ("log_probs",)
        was_training = model.training
        model.eval()

        def score(_: int, batch: list[int]) -> list[float]:
            inputs = {k: v.to(device) for k, v in self.data_collator([rows[i] for i in batch]).items()}
            with torch.inference_mode():
                logps, _ = self.compute_ref_log_probs(model, inputs)
            return logps.tolist()

        logps = map_length_sorted(lengths, batch_size, score)
        model.train(was_training)
        if training_outputs is not None:
            head.dense_head_outputs = training_outputs
        return logps
