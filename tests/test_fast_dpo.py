"""The fast path gives what TRL's own path gives: the same per-token log-probs, metrics and gradients from the
dense head, and the same reference log-probs and training loss from FastDPOTrainer."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from trl.trainer.utils import add_fused_lm_head

from sentiment_dpo.config import TrainingConfig
from sentiment_dpo.methods.fast_dpo import (FastDPOTrainer, PromptGroupedSampler, SampledTokensDPOTrainer,
                                            _distribution_stats, add_dense_lm_head, use_fused_gelu)
from sentiment_dpo.models import load_policy
from sentiment_dpo.methods.pair_methods import dpo_config
from sentiment_dpo.stages.train import pairs_dataset
from tiny import PAIRS

FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def test_distribution_stats_by_hand():
    # uniform over 4 tokens: entropy ln 4, sum p^2 = 1/4; a point mass: entropy 0, sum p^2 = 1
    log_probs = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 1e-30, 1e-30, 1e-30]]))
    entropy, log_sum_sq = _distribution_stats(log_probs, rows=1)
    assert torch.allclose(entropy, torch.tensor([1.3862944, 0.0]), atol=1e-6)
    assert torch.allclose(log_sum_sq, torch.log(torch.tensor([0.25, 1.0])), atol=1e-6)


def test_fused_gelu_gives_the_same_model(tiny_policy):
    from transformers.activations import GELUTanh, NewGELUActivation

    model = load_policy(str(tiny_policy), torch.device("cpu")).model
    fused = copy.deepcopy(model)
    use_fused_gelu(fused)
    assert any(isinstance(m, NewGELUActivation) for m in model.modules())
    assert not any(isinstance(m, NewGELUActivation) for m in fused.modules())
    assert any(isinstance(m, GELUTanh) for m in fused.modules())
    ids = torch.tensor([[1, 5, 9, 12, 7, 3, 2]])
    assert torch.allclose(model(input_ids=ids).logits, fused(input_ids=ids).logits, atol=1e-5)
    x = torch.linspace(-6, 6, 1001)
    assert torch.allclose(NewGELUActivation()(x), GELUTanh()(x), atol=1e-6)


def test_dense_head_matches_trl_tiled_head(tiny_policy):
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    trl_model, dense_model = policy.model, copy.deepcopy(policy.model)
    add_fused_lm_head(trl_model, outputs=FIELDS)
    add_dense_lm_head(dense_model, outputs=FIELDS)
    ids = torch.tensor([[1, 5, 9, 12, 7, 3, 0], [1, 8, 4, 6, 2, 0, 0]])
    labels = ids.masked_fill(torch.tensor([[0, 0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0, 0]]) == 0, -100)
    mask = torch.tensor([[1] * 6 + [0], [1] * 5 + [0, 0]])
    outputs = [model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
               for model in (trl_model, dense_model)]
    labelled = labels[:, 1:] != -100
    for name in FIELDS:
        expected, got = getattr(outputs[0], name), getattr(outputs[1], name)
        assert got.shape == expected.shape, name
        if name == "is_top1":
            assert torch.equal(got[labelled], expected[labelled])
        else:
            assert torch.allclose(got[labelled], expected[labelled], atol=1e-5), name
    assert torch.all(outputs[1].log_probs[~labelled] == 0)
    for output in outputs:
        output.log_probs.sum().backward()
    for (name, a), b in zip(trl_model.named_parameters(), dense_model.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    # fields not asked for are None, as from TRL's head
    add_dense_lm_head(dense_model, outputs=("log_probs",))
    narrow = dense_model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert torch.allclose(narrow.log_probs, outputs[1].log_probs) and narrow.entropy is None
    # calls without fused_lm_head (generation) still get the model's own logits
    assert dense_model(input_ids=ids).logits.shape == (2, 7, dense_model.config.vocab_size)


def test_dense_head_runs_each_distinct_row_once(tiny_policy):
    """A batch with repeated rows (one text in several pairs): the model runs on the 3 distinct rows only, and
    every output and every gradient equals TRL's head on the whole batch of 5."""
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    trl_model, dense_model = policy.model, copy.deepcopy(policy.model)
    add_fused_lm_head(trl_model, outputs=FIELDS)
    add_dense_lm_head(dense_model, outputs=FIELDS)
    a, b, c = [1, 5, 9, 12, 7, 3, 0], [1, 8, 4, 6, 2, 0, 0], [1, 5, 9, 4, 4, 0, 0]
    ids = torch.tensor([a, b, a, c, b])
    mask = (ids != 0).long()
    labels = ids.masked_fill(torch.tensor([[0, 0, 0, 1, 1, 1, 1]] * 5) * mask == 0, -100)
    rows_run = []
    dense_model.base_model.register_forward_hook(lambda _m, _a, out: rows_run.append(out.last_hidden_state.size(0)))
    outputs = [model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
               for model in (trl_model, dense_model)]
    assert rows_run == [3]
    labelled = labels[:, 1:] != -100
    for name in FIELDS:
        expected, got = getattr(outputs[0], name), getattr(outputs[1], name)
        assert got.shape == expected.shape, name
        if name != "is_top1":
            assert torch.allclose(got[labelled], expected[labelled], atol=1e-5), name
    assert torch.equal(outputs[1].label_mask, labelled)
    weights = torch.arange(1.0, 6.0)[:, None]  # rows weighted differently: each copy's gradient must count
    for output in outputs:
        (output.log_probs * weights).sum().backward()
    for (name, x), y in zip(trl_model.named_parameters(), dense_model.parameters()):
        assert torch.allclose(x.grad, y.grad, atol=1e-5, rtol=1e-4), name


def test_prompt_grouped_sampler_keeps_each_prompts_pairs_together():
    prompts = [(i % 20,) for i in range(100)]  # 20 prompts, 5 pairs each, interleaved in the dataset
    sampler = PromptGroupedSampler(prompts, seed=3)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(100)) and len(sampler) == 100
        runs = [prompts[i] for i in order]
        assert all(len(set(runs[k:k + 5])) == 1 for k in range(0, 100, 5))  # whole prompts, one after another
        epochs.append(order)
    assert epochs[0] != epochs[1]  # a new prompt order each epoch
    sampler.set_epoch(0)
    assert list(sampler) == epochs[0] == list(PromptGroupedSampler(prompts, seed=3))  # seeded


# Every pair of 3 texts for each of two prompts: each text is in two pairs.
SHARED_PAIRS = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in [
    ("the movie was", " great .", " dull ."), ("the movie was", " great .", " bad and long ."),
    ("the movie was", " dull .", " bad and long ."),
    ("the plot", " is charming .", " is tedious ."), ("the plot", " is charming .", " is clumsy and slow ."),
    ("the plot", " is tedious .", " is clumsy and slow ."),
]]


@pytest.mark.parametrize("loss, group_by_prompt", [("sigmoid", False), ("hinge", False), ("ipo", False),
                                                   ("sft", False), ("sigmoid", True), ("hinge", True)])
def test_fast_trainer_matches_trl(loss, group_by_prompt, tiny_policy, tmp_path):
    """Several batches (batch 2 or 3, 2 epochs; the reference pass batches in length order, so its results must be put
    back in dataset order): both reference log-probs of every pair, every logged loss and the final weights match
    TRL's own. Ungrouped, against an unmodified `DPOTrainer` on the same text pairs (both prepare them with TRL's
    own tokenization); grouped by prompt, which TRL has no option for, against `SampledTokensDPOTrainer`'s TRL path
    on the same token ids: a batch is one prompt's 3 pairs of 3 texts, which the fast path runs once each."""
    from datasets import Dataset
    from trl import DPOTrainer

    pairs = SHARED_PAIRS if group_by_prompt else PAIRS
    config = TrainingConfig(loss=loss, epochs=2, batch_size=3 if group_by_prompt else 2, learning_rate=1e-2,
                            group_by_prompt=group_by_prompt, run_dir=str(tmp_path), beta=None if loss == "sft" else 0.3)
    results = []
    for trainer_class in ((SampledTokensDPOTrainer if group_by_prompt else DPOTrainer), FastDPOTrainer):
        policy = load_policy(str(tiny_policy), torch.device("cpu"))
        # the fast trainer's GELU on both sides (equal up to rounding, test above; Adam at lr 1e-2 turns a rounding
        # difference in a near-zero gradient into a step of either sign)
        use_fused_gelu(policy.model)
        args = dpo_config(config, tmp_path / trainer_class.__name__, True)
        args.logging_steps = 1
        args.precompute_ref_batch_size = 3  # batches of the reference pass straddle the length order
        if group_by_prompt:
            trainer = trainer_class(model=policy.model, args=args, processing_class=policy.tokenizer,
                                    train_dataset=pairs_dataset(pairs, policy.tokenizer), group_by_prompt=True)
        else:
            text = Dataset.from_list([{k: pair[k] for k in ("prompt", "chosen", "rejected")} for pair in pairs])
            trainer = trainer_class(model=policy.model, args=args, train_dataset=text,
                                    processing_class=policy.tokenizer)
        reference = [(trainer.train_dataset[i]["ref_chosen_logps"], trainer.train_dataset[i]["ref_rejected_logps"])
                     for i in range(len(pairs))]
        if group_by_prompt:  # each batch: one prompt's 3 pairs, 3 distinct texts
            for batch in trainer.get_train_dataloader():
                assert len(torch.unique(batch["input_ids"], dim=0)) == 3
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results.append((reference, losses, {k: v.clone() for k, v in policy.model.state_dict().items()}))
    (trl_reference, trl_losses, trl_weights), (fast_reference, fast_losses, fast_weights) = results
    for (trl_chosen, trl_rejected), (fast_chosen, fast_rejected) in zip(trl_reference, fast_reference):
        assert fast_chosen == pytest.approx(trl_chosen, abs=1e-4)
        assert fast_rejected == pytest.approx(trl_rejected, abs=1e-4)
    assert len(fast_losses) == len(trl_losses) == 4  # one per step (4 or 6 pairs, batch 2 or 3, 2 epochs)
    assert fast_losses == pytest.approx(trl_losses, rel=1e-4, abs=1e-5)  # hinge ends near 0: rounding is relative
    for name, value in trl_weights.items():
        # 4 Adam steps at lr 1e-2 move weights by ~4e-2; float rounding of the two heads leaves ~1e-5
        assert torch.allclose(fast_weights[name], value, atol=5e-5), name


def test_trl_path_under_untested_launchers_and_a_loud_error_without_trl_internals(monkeypatch):
    from trl import DPOTrainer

    from sentiment_dpo.methods import fast_dpo
    from sentiment_dpo.errors import PipelineError

    assert fast_dpo.dpo_trainer_class() is FastDPOTrainer
    for variable in fast_dpo.UNTESTED_SETUPS:  # what `accelerate launch` sets for DeepSpeed / FSDP
        monkeypatch.setenv(variable, "true")
        assert fast_dpo.dpo_trainer_class() is SampledTokensDPOTrainer
        monkeypatch.delenv(variable)
    monkeypatch.delattr(DPOTrainer, "_precompute_ref_logps")
    with pytest.raises(PipelineError, match="the installed TRL lacks _precompute_ref_logps"):
        fast_dpo.dpo_trainer_class()


@pytest.mark.parametrize("trainer_class", [SampledTokensDPOTrainer, FastDPOTrainer])
def test_soft_labels_loss_and_gradient_by_hand(trainer_class, tiny_policy, tmp_path):
    """With soft labels each pair's loss is −q·log σ(βΔ) − (1 − q)·log σ(−βΔ), q = σ(r_chosen − r_rejected). Once the
    policy has moved off the reference (Δ ≠ 0), the trainer's loss and gradient equal that formula computed by hand
    from plain forward passes of the policy and the reference; the hard loss (q = 1) gives other values."""
    rewards = [(2.0, -1.0), (0.5, 0.25), (1.0, 1.0), (-0.5, -3.0)]  # q = 0.95, 0.56, 0.5, 0.92
    rows = [pair | {"chosen_reward": c, "rejected_reward": r} for pair, (c, r) in zip(PAIRS, rewards)]
    beta = 0.5
    config = TrainingConfig(loss="sigmoid", beta=beta, soft_labels=True, run_dir=str(tmp_path))
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    reference = load_policy(str(tiny_policy), torch.device("cpu")).model
    dataset = pairs_dataset(rows, policy.tokenizer, soft_labels=True)
    trainer = trainer_class(model=policy.model, args=dpo_config(config, tmp_path / "out", True),
                            train_dataset=dataset, processing_class=policy.tokenizer)
    torch.manual_seed(0)
    with torch.no_grad():  # move the policy off the reference
        for parameter in policy.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    by_hand = load_policy(str(tiny_policy), torch.device("cpu")).model
    by_hand.load_state_dict(policy.model.state_dict())

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()

    def logp(model, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
        ids = torch.tensor([prompt_ids + completion_ids])
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        return log_probs.gather(-1, ids[0, 1:, None]).squeeze(-1)[len(prompt_ids) - 1:].sum()

    q = torch.tensor([1 / (1 + math.exp(r - c)) for c, r in rewards])
    deltas = []
    for row in dataset:
        with torch.no_grad():
            ref = logp(reference, row["prompt_ids"], row["chosen_ids"]) - logp(reference, row["prompt_ids"],
                                                                                row["rejected_ids"])
        deltas.append(logp(by_hand, row["prompt_ids"], row["chosen_ids"])
                      - logp(by_hand, row["prompt_ids"], row["rejected_ids"]) - ref)
    x = beta * torch.stack(deltas)
    expected = (-q * F.logsigmoid(x) - (1 - q) * F.logsigmoid(-x)).mean()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(loss.item() - (-F.logsigmoid(x)).mean().item()) > 1e-3  # the hard loss differs
    for (name, got), want in zip(policy.model.named_parameters(), by_hand.parameters()):
        assert torch.allclose(got.grad, want.grad, rtol=1e-4, atol=1e-6), name


def _sequence_logps(model, tokenizer, rows, side: str) -> list[float]:
    """Each row's summed log-prob of its `side` completion given BOS + prompt, by hand."""
    from sentiment_dpo.models import prompt_ids

    out = []
    with torch.no_grad():
        for row in rows:
            context = prompt_ids(tokenizer, row["prompt"])
            ids = torch.tensor([context + tokenizer(row[side], add_special_tokens=False)["input_ids"]])
            log_probs = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
            out.append(sum(log_probs[t - 1, ids[0, t]].item() for t in range(len(context), ids.shape[1])))
    return out


@pytest.mark.parametrize("trainer_class", [SampledTokensDPOTrainer, FastDPOTrainer])
def test_the_reference_is_the_starting_policy_whatever_the_start_bias(trainer_class, tiny_policy, tmp_path):
    """The token-bias recipe puts a start bias on the model before the trainer is built. With precomputed reference
    log-probs TRL scores the reference through that model: they must still be the starting policy's own, and with
    or without precomputation (which reloads the reference from its folder) the first loss and gradient agree."""
    from sentiment_dpo.methods.logit_bias import trained_logit_bias
    from sentiment_dpo.methods.token_bias import choose_trained_parameters

    start_bias = torch.randn(len(load_policy(str(tiny_policy), torch.device("cpu")).tokenizer),
                             generator=torch.Generator().manual_seed(0))  # about ±1 nat per token
    starting = load_policy(str(tiny_policy), torch.device("cpu"))
    use_fused_gelu(starting.model)
    own = [_sequence_logps(starting.model, starting.tokenizer, PAIRS, side) for side in ("chosen", "rejected")]
    # soft labels (the recipe's) from made-up rewards: their loss term reads the reference log-probs too
    scored = [pair | {"chosen_reward": 1.0 + k, "rejected_reward": -0.5} for k, pair in enumerate(PAIRS)]
    results = []
    for precompute in (True, False):
        config = TrainingConfig(loss="sigmoid", recipe="token-bias", bias_start="zero", batch_size=len(PAIRS),
                                precompute_ref_log_probs=precompute, run_dir=str(tmp_path))
        policy = load_policy(str(tiny_policy), torch.device("cpu"))
        use_fused_gelu(policy.model)
        choose_trained_parameters(policy.model, config, initial_bias=start_bias)
        biased = [_sequence_logps(policy.model, policy.tokenizer, PAIRS, side) for side in ("chosen", "rejected")]
        assert abs(biased[0][0] - own[0][0]) > 0.1  # the start bias moves the policy: the test can tell them apart
        trainer = trainer_class(model=policy.model, args=dpo_config(config, tmp_path / str(precompute), True),
                                train_dataset=pairs_dataset(scored, policy.tokenizer, soft_labels=True),
                                processing_class=policy.tokenizer)
        if precompute:
            for side, column in enumerate(("ref_chosen_logps", "ref_rejected_logps")):
                assert trainer.train_dataset[column] == pytest.approx(own[side], abs=1e-4)
        batch = next(iter(trainer.get_train_dataloader()))
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        results.append((loss.item(), trained_logit_bias(policy.model).theta.grad.clone()))
    (loss_pre, grad_pre), (loss_live, grad_live) = results
    assert loss_pre == pytest.approx(loss_live, rel=1e-5)
    assert torch.allclose(grad_pre, grad_live, atol=1e-6 * float(grad_pre.abs().max()) + 1e-9)
    assert float(grad_pre.abs().max()) > 0
