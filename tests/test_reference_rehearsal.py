"""The original experiment's path (`--preset reference`): its models by hub id from a Hugging Face cache with
HF_HUB_OFFLINE=1, IMDb-shaped prompts from a local folder (scripts/rehearse_reference.py, here with tiny models under
the real ids), and the up-front estimate of a run's time and memory (sentiment_dpo/run_estimate.py)."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from sentiment_dpo import files, layout
from sentiment_dpo.config import GenerationConfig, MetricsConfig, PairsConfig, TrainingConfig
from sentiment_dpo import run_estimate


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "rehearse_reference.py"), "--tiny", "--out", str(out)],
                   check=True, capture_output=True)
    return out


def test_the_reference_preset_loads_its_models_by_hub_id_from_the_cache_offline(rehearsal, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({
        "losses": ["sigmoid"],
        "generation": {"num_samples": 32, "samples_per_prompt": 4, "max_new_tokens": 6, "batch_size": 8},
        "pairs": {"num_pairs": 12},
        "training": {"max_steps": 1, "batch_size": 4},
        "metrics": {"num_prompts": 4, "batch_size": 8, "judge": "none", "ceiling_samples": 4}}))
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(rehearsal / "hub")}
    result = subprocess.run([sys.executable, "run_pipeline.py", "--config", str(config), "--preset", "reference",
                             "--prompts", str(rehearsal / "imdb"), "--run-dir", str(tmp_path / "run")],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    generation = files.read_yaml(tmp_path / "run" / layout.GENERATION_CONFIG, "")
    assert generation["policy"] == "lvwerra/gpt2-imdb" and generation["reward"] == "lvwerra/distilbert-imdb"
    assert generation["provenance"]["policy_source"] == "lvwerra/gpt2-imdb"  # loaded by id, as from the hub
    assert generation["provenance"]["prompts"]["heldout_split"] == "test"
    assert (tmp_path / "run" / "SUMMARY.md").exists()
    assert "estimate for this run on this machine" in result.stderr


def test_without_the_cache_the_hub_id_is_one_line_naming_the_offline_default(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    result = subprocess.run([sys.executable, "text_generation.py", "--preset", "reference", "--run-dir",
                             str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot load policy 'lvwerra/gpt2-imdb'" in result.stderr


COSTS = {"machine": "test", "machine_gflops": 100.0, "policy": "lvwerra/gpt2-imdb",
         "generate_fixed_s": 10.0, "generate_per_sample_s": 0.1, "pairs_s": 2.0,
         "train_fixed_s": 20.0, "forward_per_text_s": 0.05, "lora_step_share": 0.6,
         "evaluate_fixed_s": 15.0, "evaluate_per_prompt_s": 0.4, "ceiling_per_sample_s": 0.1,
         "generate_gib": 2.0, "evaluate_gib": 3.0, "train_base_gib": 2.5, "train_per_text_gib": 0.03,
         "lora_base_gib": 1.0}


@pytest.fixture
def measured(tmp_path, monkeypatch):
    table = tmp_path / "unit_costs.json"
    table.write_text(json.dumps({"reference": COSTS}))
    monkeypatch.setattr(run_estimate, "UNIT_COSTS_FILE", table)
    monkeypatch.setattr(run_estimate, "machine_speed", lambda: 100.0)  # the measuring machine's speed


def configs(num_pairs: int = 2000, batch_size: int = 448, **training):
    generation = GenerationConfig(preset="reference", num_samples=1000, device="cpu")
    pairs = PairsConfig(num_pairs=num_pairs)
    trainings = {loss: TrainingConfig(loss=loss, batch_size=batch_size, **training) for loss in ("sigmoid", "hinge")}
    metrics = {loss: MetricsConfig(loss=loss) for loss in trainings}
    return generation, pairs, trainings, metrics


def test_the_estimate_adds_up_the_units_of_each_stage(measured):
    expected = run_estimate.estimate(*configs())
    # 1000 samples: 125 prompts x 28 pairs = 3500 available, 2000 taken (16 a prompt): a batch of 448 pairs is
    # 28 prompts' pairs, 224 texts; 5 steps an epoch, 2 epochs; 1000 texts in the reference pass
    assert run_estimate.pairs_count(*configs()[:2]) == (2000, 125)
    assert expected.trainings["sigmoid"].texts_per_step == math.ceil(448 / 16) * 8 == 224
    assert expected.seconds["text_generation"] == pytest.approx(10 + 0.1 * 1000)
    assert expected.seconds["main sigmoid"] == pytest.approx(20 + 0.05 * (1000 + 10 * 224 * 3))
    # stage 4: 256 held-out prompts x 1 sample; the first method draws the ceiling (64 a prompt), the second not
    assert expected.seconds["calculate_metrics sigmoid"] == pytest.approx(15 + 0.4 * 256 + 0.1 * 256 * 64)
    assert expected.seconds["calculate_metrics hinge"] == pytest.approx(15 + 0.4 * 256)
    assert expected.peak_gib == pytest.approx(2.5 + 0.03 * 224)
    lora = run_estimate.estimate(*configs(lora_rank=16))
    assert lora.seconds["main sigmoid"] == pytest.approx(20 + 0.05 * (1000 + 10 * 224 * 3 * 0.6))


def test_every_pair_of_a_prompt_shares_its_samples_in_a_grouped_batch(measured):
    expected = run_estimate.estimate(*configs(num_pairs=0))
    assert expected.trainings["sigmoid"].texts_per_step == 128  # 16 prompts' 28 pairs, 8 texts each
    ungrouped = run_estimate.estimate(*configs(num_pairs=0, group_by_prompt=False))
    assert ungrouped.trainings["sigmoid"].texts_per_step == 896


def test_a_training_that_does_not_fit_is_warned_of_with_the_accumulation_that_fits(measured, monkeypatch):
    expected = run_estimate.estimate(*configs())
    expected.machine_gib = 8.0  # 7.2 GiB usable: 2.5 + 0.03 x 224 = 9.2 does not fit, 2.5 + 0.03 x 112 = 5.9 does
    warnings = expected.memory_warnings()
    assert len(warnings) == 2 and "training sigmoid needs about 9.2 GiB (224 texts per micro-batch" in warnings[0]
    assert "set gradient_accumulation_steps: 2" in warnings[0]
    expected.machine_gib = 2.0  # not even the weights: LoRA or a smaller batch
    assert "train LoRA adapters (--lora-rank 16) or lower --batch-size" in expected.memory_warnings()[0]
    expected.machine_gib = 64.0
    assert expected.memory_warnings() == []


def test_no_estimate_without_measured_costs_for_the_policy(measured):
    generation, pairs, trainings, metrics = configs()
    generation.policy = "someone/else"
    assert run_estimate.estimate(generation, pairs, trainings, metrics) is None
