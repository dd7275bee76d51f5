"""The reference log-probs pass is cached by content: a second pair training on the same pairs from the same model
(another loss, another run directory) reads TRL's numbers back without running the model, and anything that
changes the numbers (a weight, the batch size) or an unreadable entry runs the pass again."""

import json

import pytest
import torch

from sentiment_dpo.config import TrainingConfig
from sentiment_dpo.methods import fast_dpo, reference_logps_cache
from sentiment_dpo.methods.fast_dpo import FastDPOTrainer, SampledTokensDPOTrainer, use_fused_gelu
from sentiment_dpo.models import load_policy
from sentiment_dpo.methods.pair_methods import dpo_config
from sentiment_dpo.stages.train import pairs_dataset
from tiny import PAIRS

COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTIMENT_DPO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def passes(monkeypatch) -> list[int]:
    """How many texts each reference pass scored with the model (one entry per pass)."""
    ran: list[int] = []
    real = fast_dpo.map_length_sorted

    def counted(lengths, batch_size, fn, across_processes=True):
        ran.append(len(lengths))
        return real(lengths, batch_size, fn, across_processes)

    monkeypatch.setattr(fast_dpo, "map_length_sorted", counted)
    return ran


def reference_columns(tiny_policy, tmp_path, loss: str, trainer_class=FastDPOTrainer, batch_size: int = 3,
                      change=None) -> tuple[list[float], list[float], object]:
    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    use_fused_gelu(policy.model)
    if change is not None:
        change(policy.model)
    config = TrainingConfig(loss=loss, batch_size=2, run_dir=str(tmp_path))
    args = dpo_config(config, tmp_path / loss, True)
    args.precompute_ref_batch_size = batch_size
    trainer = trainer_class(model=policy.model, args=args, train_dataset=pairs_dataset(PAIRS, policy.tokenizer),
                            processing_class=policy.tokenizer)
    return (*(list(trainer.train_dataset[column]) for column in COLUMNS), trainer)


def test_a_second_loss_reads_the_first_ones_reference_pass(tiny_policy, tmp_path, cache, passes):
    chosen, rejected, first = reference_columns(tiny_policy, tmp_path, "sigmoid")
    distinct = len({(p["prompt"], p[side]) for p in PAIRS for side in ("chosen", "rejected")})
    assert passes == [distinct]
    trl_chosen, trl_rejected, _ = reference_columns(tiny_policy, tmp_path, "sigmoid", SampledTokensDPOTrainer)
    assert chosen == pytest.approx(trl_chosen, abs=1e-4) and rejected == pytest.approx(trl_rejected, abs=1e-4)
    again_chosen, again_rejected, second = reference_columns(tiny_policy, tmp_path, "hinge")
    assert passes == [distinct]  # no second pass over the model
    assert (again_chosen, again_rejected) == (chosen, rejected)  # the same floats, bit for bit
    assert second.reference_logps_key == first.reference_logps_key
    stored = json.loads(reference_logps_cache.entry(first.reference_logps_key).read_text())
    assert stored["record"]["num_texts"] == distinct and stored["record"]["batch_size"] == 3


def test_a_changed_weight_or_batch_size_runs_the_pass_again(tiny_policy, tmp_path, cache, passes):
    chosen, _, first = reference_columns(tiny_policy, tmp_path, "sigmoid")

    def nudge(model):  # one weight of the last block, by one part in a thousand
        with torch.no_grad():
            model.transformer.h[-1].mlp.c_proj.weight[0, 0] *= 1.001

    nudged, _, second = reference_columns(tiny_policy, tmp_path, "sigmoid", change=nudge)
    assert len(passes) == 2 and second.reference_logps_key != first.reference_logps_key
    assert nudged != chosen  # the pass saw the nudged model, not the first one's cached numbers
    _, _, third = reference_columns(tiny_policy, tmp_path, "sigmoid", batch_size=2)
    assert len(passes) == 3 and len({t.reference_logps_key for t in (first, second, third)}) == 3


@pytest.mark.parametrize("damage", ["{not json", '{"logps": [1.0]}'])
def test_an_unreadable_entry_is_computed_again_and_replaced(tiny_policy, tmp_path, cache, passes, damage):
    chosen, _, first = reference_columns(tiny_policy, tmp_path, "sigmoid")
    entry = reference_logps_cache.entry(first.reference_logps_key)
    entry.write_text(damage)
    again, _, _ = reference_columns(tiny_policy, tmp_path, "hinge")
    assert len(passes) == 2 and again == chosen
    assert len(json.loads(entry.read_text())["logps"]) == passes[0]
