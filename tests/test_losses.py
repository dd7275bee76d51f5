"""Every loss type the installed TRL's DPOTrainer accepts trains for a couple of steps on a tiny model."""

import math

import pytest
import torch

from sentiment_dpo.config import TrainingConfig
from sentiment_dpo.errors import PipelineError
from sentiment_dpo.models import load_policy
from sentiment_dpo.online_rl import ONLINE_METHODS
from sentiment_dpo.training import check_loss, pairs_dataset, train_policy, valid_loss_types
from tiny import PAIRS


def test_valid_loss_types_come_from_trl():
    valid = valid_loss_types()
    assert {"sigmoid", "hinge", "ipo"} <= set(valid)
    check_loss("hinge")
    with pytest.raises(PipelineError, match="unknown loss 'dpo'; choose one of: sigmoid, hinge"):
        check_loss("dpo")


# the online methods train on prompts, not pairs: tests/test_stages.py trains each
@pytest.mark.parametrize("loss", [loss for loss in valid_loss_types() if loss not in ONLINE_METHODS])
def test_every_loss_trains(loss, tiny_policy, tmp_path):
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in policy.model.named_parameters()}
    config = TrainingConfig(loss=loss, max_steps=2, batch_size=2, learning_rate=1e-2, run_dir=str(tmp_path))
    dataset = pairs_dataset(PAIRS, policy.tokenizer, as_text=loss == "slic")
    trainer = train_policy(policy.model, policy.tokenizer, dataset, config,
                           tmp_path / "out", use_cpu=True)
    assert trainer.state.global_step == 2
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    changed = [name for name, p in policy.model.named_parameters() if not torch.equal(before[name], p.detach())]
    assert changed, f"{loss}: no weight changed"
