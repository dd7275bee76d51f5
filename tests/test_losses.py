"""Every loss type the installed TRL's DPOTrainer accepts trains for a couple of steps on a tiny model."""

import math

import pytest
import torch

from sentiment_dpo.config import TrainingConfig
from sentiment_dpo.models import load_policy
from sentiment_dpo.methods.registry import DPO_LOSS_TYPES, METHODS, ONLINE_METHODS
from sentiment_dpo.stages.train import pairs_dataset, train_policy
from tiny import PAIRS


# the online methods train on prompts, not pairs: tests/test_stages.py trains each
@pytest.mark.parametrize("loss", [loss for loss in METHODS if loss not in ONLINE_METHODS])
def test_every_loss_trains_the_networks_weights_by_default(loss, tiny_policy, tmp_path):
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    block = policy.model.transformer.h[0].attn.c_attn.weight
    before = block.detach().clone()
    config = TrainingConfig(loss=loss, max_steps=2, batch_size=2, run_dir=str(tmp_path))
    trainer = train_policy(policy.model, policy.tokenizer, pairs_dataset(PAIRS, policy.tokenizer), config,
                           tmp_path / "out", use_cpu=True)
    assert trainer.state.global_step == 2
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert (config.recipe, config.logit_bias, config.lora_rank) == ("standard", False, 0)
    assert config.soft_labels in (False, None)  # hard labels (None: a loss that has no labels to soften)
    # the standard method fine-tunes the network itself: a transformer block's weights moved
    assert not torch.allclose(block, before), f"{loss}: the block weights did not move"


BETA = 0.1
LN2 = math.log(2)
EXO_EPSILON = 1e-3
# At step one the policy is the reference: every log-ratio is 0, so each loss has a closed form (TRL 1.16's
# definitions; ε: label smoothing, 0 except exo_pair's default). A loss type that were silently ignored (or
# replaced by sigmoid) would give another number.
FIRST_LOSS = {
    "sigmoid": LN2, "sigmoid_norm": LN2, "robust": LN2, "aot": LN2, "aot_unpaired": LN2,
    "hinge": 1.0, "apo_zero": 1.0, "apo_down": 1.0,
    "ipo": (1 / (2 * BETA)) ** 2, "sppo_hard": 2 * (0.5 / BETA) ** 2,
    "nca_pair": 2 * LN2, "bco_pair": 2 * LN2, "discopop": (LN2 + 1) / 2,
    "exo_pair": -LN2 - 0.5 * math.log(1 - EXO_EPSILON) - 0.5 * math.log(EXO_EPSILON),
}


def token_logps(model, tokenizer, rows, side: str) -> list[list[float]]:
    """Each row's log-probs of its `side` completion's tokens given BOS + prompt, by hand."""
    from sentiment_dpo.models import prompt_ids

    out = []
    with torch.no_grad():
        for row in rows:
            context = prompt_ids(tokenizer, row["prompt"])
            completion = tokenizer(row[side], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([context + completion])
            log_probs = torch.log_softmax(model(ids).logits[0, :-1], -1)
            out.append([log_probs[t - 1, ids[0, t]].item() for t in range(len(context), ids.shape[1])])
    return out


def chosen_nll_per_token(model, tokenizer, rows) -> float:
    """The mean negative log-prob of the chosen completions' tokens given BOS + prompt, by hand."""
    logps = [logp for row in token_logps(model, tokenizer, rows, "chosen") for logp in row]
    return -sum(logps) / len(logps)


def test_every_offline_loss_type_has_a_closed_form_first_loss():
    assert set(FIRST_LOSS) | {"sft"} == set(DPO_LOSS_TYPES)


@pytest.mark.parametrize("loss", sorted(FIRST_LOSS) + ["sft"])
def test_first_step_loss_equals_its_closed_form(loss, tiny_policy, tmp_path):
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    expected = (chosen_nll_per_token(policy.model, policy.tokenizer, PAIRS) if loss == "sft"
                else FIRST_LOSS[loss])
    config = TrainingConfig(loss=loss, beta=None if loss == "sft" else BETA, max_steps=1, batch_size=len(PAIRS),
                            learning_rate=1e-2, run_dir=str(tmp_path))
    trainer = train_policy(policy.model, policy.tokenizer, pairs_dataset(PAIRS, policy.tokenizer), config,
                           tmp_path / "out", use_cpu=True)
    assert trainer.state.log_history[-1]["train_loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("group_by_prompt", [False, True])
def test_slic_first_loss_is_the_reference_free_hinge_plus_lambda_times_the_chosen_nll(group_by_prompt, tiny_policy,
                                                                                    tmp_path):
    # SLiC-HF: mean relu(1 - beta * (log p(chosen) - log p(rejected))) over the pairs, from the policy's own
    # sequence log-likelihoods (no reference), plus lambda times the mean NLL of the chosen tokens
    beta, slic_lambda = 0.05, 0.3
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    chosen, rejected = (token_logps(policy.model, policy.tokenizer, PAIRS, side) for side in ("chosen", "rejected"))
    hinge = sum(max(0.0, 1 - beta * (sum(c) - sum(r))) for c, r in zip(chosen, rejected)) / len(PAIRS)
    assert abs(hinge - 1) > 1e-3  # the pairs' own gaps count: a reference-anchored hinge gives 1 at step one
    expected = hinge + slic_lambda * chosen_nll_per_token(policy.model, policy.tokenizer, PAIRS)
    config = TrainingConfig(loss="slic", beta=beta, slic_lambda=slic_lambda, max_steps=1, batch_size=len(PAIRS),
                            learning_rate=1e-2, run_dir=str(tmp_path), group_by_prompt=group_by_prompt)
    trainer = train_policy(policy.model, policy.tokenizer, pairs_dataset(PAIRS, policy.tokenizer), config,
                           tmp_path / "out", use_cpu=True)
    assert trainer.state.log_history[-1]["train_loss"] == pytest.approx(expected, rel=1e-4)


def test_training_runs_on_deterministic_kernels_and_restores_the_setting(tiny_policy, tmp_path):
    """Without them two trainings of the embedded policy in two processes differed in the 5th digit of a weight
    (and metrics.json with them); the setting is the caller's again afterwards."""
    from transformers import TrainerCallback

    seen = []

    class Probe(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            seen.append(torch.are_deterministic_algorithms_enabled())

    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    config = TrainingConfig(loss="sigmoid", max_steps=2, batch_size=2, run_dir=str(tmp_path))
    assert not torch.are_deterministic_algorithms_enabled()
    train_policy(policy.model, policy.tokenizer, pairs_dataset(PAIRS, policy.tokenizer), config, tmp_path / "out",
                 use_cpu=True, callbacks=[Probe()])
    assert seen == [True, True] and not torch.are_deterministic_algorithms_enabled()
