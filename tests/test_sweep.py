"""The sweep on tiny models: cells, curves, report, resume, changed settings, rounds, and evaluation that leaves
training untouched."""

import json
import shutil

import pytest
import torch

from sentiment_dpo import commands, layout
from sentiment_dpo import files
from sentiment_dpo.experiments import sweep
from sentiment_dpo.experiments.checkpoint_eval import CurveCallback
from sentiment_dpo.config import TrainingConfig
from sentiment_dpo.evaluation.evaluator import EvalSettings, Evaluator
from sentiment_dpo.methods.registry import reads
from sentiment_dpo.models import load_classifier, load_policy
from sentiment_dpo.prompts import PromptSettings, choose_prompts, prompt_pools
from sentiment_dpo.stages.train import pairs_dataset, train_policy
from conftest import ROOT
from tiny import PAIRS


def sweep_args(run_dir, policy, reward, *extra):
    return ["--run-dir", str(run_dir), "--policy", str(policy), "--reward", str(reward), "--judge", "none",
            "--ceiling-samples", "0", "--losses", "sigmoid",
            "slic", "--betas", "0.1", "--seeds", "0", "1", "--num-samples", "24", "--samples-per-prompt", "4",
            "--max-new-tokens", "6", "--num-pairs", "8", "--strategy", "random", "--epochs", "1",
            "--batch-size", "4", "--learning-rates", "0.05", "--warmup-ratio", "0", "--eval-every", "1",
            "--eval-prompts", "6", "--eval-batch-size", "8", *extra]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, tiny_policy, tiny_reward):
    run_dir = tmp_path_factory.mktemp("sweep")
    assert commands.sweep(sweep_args(run_dir, tiny_policy, tiny_reward)) == 0
    return run_dir


def test_cells_curves_and_report(finished_sweep):
    cells = sorted(p.name for p in (finished_sweep / "cells").iterdir())
    assert cells == ["sigmoid_beta0.1_lr0.05_seed0_rounds1", "sigmoid_beta0.1_lr0.05_seed1_rounds1",
                     "slic_beta0.1_lr0.05_seed0_rounds1", "slic_beta0.1_lr0.05_seed1_rounds1"]
    cell = json.loads((finished_sweep / "cells" / cells[0] / "cell.json").read_text())
    # 8 pairs at batch 4: 2 steps; the curve starts at the reference (KL exactly 0, win rate 0.5)
    assert [p["step"] for p in cell["curve"]] == [0, 1, 2]
    assert cell["curve"][0]["kl"] == 0.0 and cell["curve"][0]["win_rate"] == 0.5
    assert cell["final"] == cell["curve"][-1]
    assert set(cell["final"]) >= {"reward_mean", "kl", "self_bleu", "reference_perplexity", "distinct_2"}
    report = (finished_sweep / "report.md").read_text()
    assert "## Findings" in report and "within KL ≤ 5 nats" in report
    assert "online methods: as many steps" not in report  # no online method in this sweep
    assert "| sigmoid | 0.1 | 2 |" in report and "| slic | 0.1 | 2 |" in report
    # what trained, as each cell recorded it (the standard default: every weight), and sigmoid's labels (hard)
    assert cell["provenance"]["trained_parameters"] == "all weights"
    assert "What trained: all weights" in report and "`sigmoid`'s labels: hard." in report
    for png in ("frontier.png", "diversity_vs_reward.png", "reward_hists.png"):
        assert (finished_sweep / png).read_bytes()[:4] == b"\x89PNG"


def test_rerun_keeps_finished_cells_and_redoes_interrupted_or_changed_ones(finished_sweep, tiny_policy, tiny_reward,
                                                                            monkeypatch):
    trained = []
    original = sweep.SweepRunner.run_cell
    monkeypatch.setattr(sweep.SweepRunner, "run_cell", lambda self, cell: trained.append(cell.name)
                        or original(self, cell))
    # an interrupted cell has no cell.json (it is written last); retrained, it comes out the same
    cell_file = finished_sweep / "cells" / "slic_beta0.1_lr0.05_seed1_rounds1" / "cell.json"
    before = json.loads(cell_file.read_text())
    cell_file.unlink()
    assert commands.sweep(sweep_args(finished_sweep, tiny_policy, tiny_reward)) == 0
    assert trained == ["slic_beta0.1_lr0.05_seed1_rounds1"]
    assert json.loads(cell_file.read_text())["curve"] == before["curve"]  # win rates against the same reference
    # other training settings make a finished cell stale
    trained.clear()
    assert commands.sweep(sweep_args(finished_sweep, tiny_policy, tiny_reward, "--losses", "sigmoid",
                                        "--seeds", "0", "--warmup-ratio", "0.2")) == 0
    assert trained == ["sigmoid_beta0.1_lr0.05_seed0_rounds1"]


def test_a_moved_sweep_keeps_its_cells(finished_sweep, tiny_policy, tiny_reward, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(sweep.SweepRunner, "run_cell", lambda self, cell: trained.append(cell.name))
    moved = tmp_path / "moved"
    shutil.copytree(finished_sweep, moved)
    assert commands.sweep(sweep_args(moved, tiny_policy, tiny_reward, "--losses", "slic")) == 0
    assert trained == []
    assert (moved / "report.md").exists()
    # a hand-broken record of the data settings is refused like other settings, in one line
    (moved / layout.SWEEP_CONFIG).write_text("data: [broken]\n")
    assert commands.sweep(sweep_args(moved, tiny_policy, tiny_reward, "--losses", "slic")) == 2


def test_other_data_settings_are_refused(finished_sweep, tiny_policy, tiny_reward, capsys):
    assert commands.sweep(sweep_args(finished_sweep, tiny_policy, tiny_reward, "--num-pairs", "6")) == 2
    assert "holds data made with other generation / pair settings" in capsys.readouterr().err


def test_bad_grid_values_fail_at_once(tmp_path, capsys):
    assert commands.sweep(["--run-dir", str(tmp_path), "--losses", "sigmod"]) == 2
    assert "unknown loss 'sigmod'" in capsys.readouterr().err
    assert commands.sweep(["--run-dir", str(tmp_path), "--rounds", "0"]) == 2
    assert "--rounds >= 1" in capsys.readouterr().err
    assert commands.sweep(["--run-dir", str(tmp_path), "--kl-budgets", "-1"]) == 2
    assert "--kl-budgets needs values > 0" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_rounds_continue_the_curve(tmp_path, tiny_policy, tiny_reward):
    assert commands.sweep(sweep_args(tmp_path, tiny_policy, tiny_reward, "--losses", "sigmoid", "--seeds", "0",
                                        "--rounds", "2")) == 0
    cell = json.loads((tmp_path / "cells" / "sigmoid_beta0.1_lr0.05_seed0_rounds2" / "cell.json").read_text())
    assert [(p["round"], p["step"]) for p in cell["curve"]] == [(0, 0), (1, 1), (1, 2), (2, 3), (2, 4)]
    assert "sigmoid, 2 rounds" in (tmp_path / "report.md").read_text()


def test_checkpoint_evaluation_leaves_training_unchanged(tiny_policy, tiny_reward, tmp_path):
    """Evaluating samples with the global RNG and switches the model to eval mode; training must not notice."""
    reference = load_policy(str(tiny_policy), torch.device("cpu"))
    reward = load_classifier(str(tiny_reward), torch.device("cpu"))
    prompts = choose_prompts(prompt_pools(PromptSettings()), "heldout", 4, seed=0)
    evaluator = Evaluator(reference, reward, None, EvalSettings(prompts, 1, 4, 8, 0))
    with pytest.raises(RuntimeError, match="evaluate the reference"):
        evaluator.evaluate(reference.model, reference.tokenizer)
    evaluator.evaluate_reference()
    # the global RNG and the train mode are as they were
    model = load_policy(str(tiny_policy), torch.device("cpu")).model.train()
    torch.manual_seed(123)
    rng = torch.random.get_rng_state()
    evaluator.evaluate(model, reference.tokenizer)
    assert torch.equal(rng, torch.random.get_rng_state()) and model.training
    weights = []
    for with_callback in (False, True):
        policy = load_policy(str(tiny_policy), torch.device("cpu"))
        config = TrainingConfig(max_steps=3, batch_size=2, learning_rate=1e-2, run_dir=str(tmp_path))
        points = []
        callback = CurveCallback(lambda model, step, tok=policy.tokenizer: points.append(
            (step, evaluator.evaluate(model, tok)[0])), every=2)
        train_policy(policy.model, policy.tokenizer, pairs_dataset(PAIRS, policy.tokenizer), config,
                     tmp_path / str(with_callback), use_cpu=True, callbacks=[callback] if with_callback else None)
        weights.append({k: v.clone() for k, v in policy.model.state_dict().items()})
        if with_callback:
            assert [step for step, _ in points] == [2, 3]
            assert points[-1][1]["kl"] != 0.0  # the trained policy differs from the reference
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_yaml_grid_values_may_be_scalars(tmp_path):
    from sentiment_dpo.config_parser import make_parser, parse_config

    config_file = tmp_path / "sweep.yaml"
    config_file.write_text("betas: 0.1\nlosses: hinge\nseeds: [3, 4]\n")
    config = parse_config(sweep.SweepConfig, make_parser(sweep.SweepConfig, ""), ["--config", str(config_file)])
    assert (config.betas, config.losses, config.seeds) == ([0.1], ["hinge"], [3, 4])
    assert [cell.name for cell in sweep.grid(config)] == ["hinge_beta0.1_lr0.0002_seed3_rounds1",
                                                          "hinge_beta0.1_lr0.0002_seed4_rounds1"]


def test_slic_lambda_only_changes_the_slic_cells():
    sigmoid, slic = sweep.Cell("sigmoid", 0.1, 2e-4, 0, 1), sweep.Cell("slic", 0.1, 2e-4, 0, 1)
    one, tenth = sweep.SweepConfig(slic_lambda=[1.0]), sweep.SweepConfig(slic_lambda=[0.1])
    assert sweep.cell_settings(one, sigmoid) == sweep.cell_settings(tenth, sigmoid)
    assert sweep.cell_settings(one, slic) != sweep.cell_settings(tenth, slic)
    assert sweep.cell_settings(tenth, slic)["slic_lambda"] == 0.1


def test_ceiling_judge_and_online_methods_on_one_frontier(tmp_path, tiny_policy, tiny_reward, tiny_judge):
    args = sweep_args(tmp_path, tiny_policy, tiny_reward, "--losses", "sft", "rloo", "grpo", "online_dpo",
                      "--betas", "0.1", "0.3", "--seeds", "0", "--num-generations", "2", "--judge", str(tiny_judge),
                      "--ceiling-samples", "4", "--kl-budgets", "5")
    assert commands.sweep(args) == 0
    cells = sorted(p.name for p in (tmp_path / "cells").iterdir())
    # sft has no β: one cell; the online methods one per β, as many steps (2) as an offline cell
    assert cells == sorted(["sft_beta0.1_lr0.05_seed0_rounds1"] + [
        f"{m}_beta{b}_lr0.05_seed0_rounds1" for m in ("rloo", "grpo", "online_dpo") for b in ("0.1", "0.3")])
    for name in cells:
        cell = json.loads((tmp_path / "cells" / name / "cell.json").read_text())
        assert [p["step"] for p in cell["curve"]] == [0, 1, 2], name
        assert "judge_p_positive_mean" in cell["final"] and cell["final"]["kl"] != 0.0, name
    assert len(files.read_jsonl(tmp_path / "reference" / "ceiling_samples.jsonl", ("judge_p_positive",), "")) == 24
    report = (tmp_path / "report.md").read_text()
    assert "## The ceiling" in report and "| best-of-4 | ≤ 0.64 |" in report
    assert "(online methods: as many steps, 4 completions each)" in report
    assert "| KL overhead | share of the ceiling's gain |" in report and "judge p_positive" in report
    for method in ("sft", "rloo", "grpo", "online_dpo"):
        assert f"| {method} | " in report
    assert (tmp_path / "judge_frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_settings_for_online_methods():
    rloo = sweep.Cell("rloo", 0.1, 2e-4, 0, 1)
    config = sweep.SweepConfig(num_pairs=1000, batch_size=[16], epochs=[2])
    assert sweep.training_config(config, rloo).max_steps == 126
    # their own pairing settings do not exist for them; the number of generations does
    assert sweep.cell_settings(sweep.SweepConfig(strategy="margin", margin=0.5), rloo) == sweep.cell_settings(
        sweep.SweepConfig(strategy="margin", margin=1.0), rloo)
    assert sweep.cell_settings(sweep.SweepConfig(losses=["rloo"], num_generations=[2]), rloo) != sweep.cell_settings(
        sweep.SweepConfig(losses=["rloo"], num_generations=[4]), rloo)
    # an option none of the sweep's methods reads would do nothing: refused
    with pytest.raises(Exception, match="the sweep sets --num-generations, which none of sigmoid, hinge reads"):
        sweep.SweepConfig(losses=["sigmoid", "hinge"], num_generations=[2])
    with pytest.raises(Exception, match="multiple of --num-generations"):
        sweep.SweepConfig(losses=["grpo"], batch_size=[6], num_generations=[4])
    assert [c.name for c in sweep.grid(sweep.SweepConfig(losses=["rloo"], betas=[0.1], seeds=[0], rounds=[1, 3]))] \
        == ["rloo_beta0.1_lr0.0002_seed0_rounds1"]


def test_every_stage_option_reaches_the_cells_or_is_refused(tmp_path):
    """The sweep's options are derived from the stage configs: each stage option is a sweep option (with the
    stage's default) that reaches the stage config each cell runs with, a grid axis, or refused with its reason."""
    import dataclasses

    from sentiment_dpo.config import GenerationConfig, PairsConfig
    from sentiment_dpo.config_parser import make_parser, parse_config

    sweep_fields = {f.name: f for f in dataclasses.fields(sweep.SweepConfig)}
    for cls in (GenerationConfig, PairsConfig, TrainingConfig):
        for f in dataclasses.fields(cls):
            if f.name in sweep.NOT_HONOURED or f.name in sweep.AXES or f.name in sweep.COMMON:
                continue
            if cls is GenerationConfig and f.name == "batch_size":
                continue  # sampling batches: --eval-batch-size
            assert f.name in sweep_fields, f"{cls.__name__}.{f.name} is missing from the sweep"
            default = sweep_fields[f.name].default_factory() if f.name in sweep.TRAINING_NAMES else \
                sweep_fields[f.name].default
            assert default == ([f.default] if f.name in sweep.TRAINING_NAMES else f.default), f.name
    config = sweep.SweepConfig(prompt_mode="bos", prompt_words=3, temperature=0.7, positive_label="POS",
                               strategy="best_worst", eval_batch_size=8, label_smoothing=[0.1], lora_rank=[4],
                               lora_alpha=[8.0], warmup_ratio=[0.2], losses=["robust"], betas=[0.2])
    generation, pairs = sweep.generation_config(config), sweep.pairs_config(config)
    assert (generation.prompt_mode, generation.prompt_words, generation.temperature, generation.positive_label,
            generation.batch_size, pairs.strategy) == ("bos", 3, 0.7, "POS", 8, "best_worst")
    (cell,) = sweep.grid(sweep.SweepConfig(**{**config.__dict__, "seeds": [5]}))
    training = sweep.training_config(config, cell)
    assert (training.loss, training.beta, training.seed, training.label_smoothing, training.lora_rank,
            training.lora_alpha, training.warmup_ratio) == ("robust", 0.2, 5, 0.1, 4, 8.0, 0.2)
    assert reads("ipo", "group_by_prompt") and not reads("rloo", "group_by_prompt")
    # the logit bias as a grid axis: two cells for sigmoid, one for rloo, which trains its weights (no refusal)
    axis = sweep.SweepConfig(losses=["sigmoid", "rloo"], seeds=[0], betas=[0.5], logit_bias=[True, False])
    cells = sweep.grid(axis)
    assert [(c.loss, dict(c.options).get("logit_bias")) for c in cells] == [
        ("sigmoid", True), ("sigmoid", False), ("rloo", None)]
    assert sweep.training_config(axis, cells[-1]).logit_bias is None  # not an option rloo has
    # every pair of 8 samples for each of 1,000 prompts: the online cells train as many steps as 28,000 pairs take
    every = sweep.SweepConfig(num_pairs=0, num_samples=8000, samples_per_prompt=8, losses=["rloo"], batch_size=[448],
                              epochs=[1.0])
    assert sweep.pairs_per_round(every) == 28000
    assert sweep.training_config(every, sweep.grid(every)[0]).max_steps == 63  # ceil(28000 / 448) x 1 epoch
    # batch size unset: the offline cells take 448 pairs per step, the online ones 16 completions for as many steps
    unset = sweep.SweepConfig(num_pairs=0, num_samples=8000, samples_per_prompt=8, losses=["sigmoid", "rloo"],
                              seeds=[0], betas=[0.5], epochs=[1.0])
    offline, online = (sweep.training_config(unset, cell) for cell in sweep.grid(unset))
    assert (offline.loss, offline.batch_size, offline.max_steps) == ("sigmoid", 448, -1)
    assert (online.loss, online.batch_size, online.max_steps) == ("rloo", 16, 63)
    file = tmp_path / "sweep.yaml"
    file.write_text("resume: true\n")
    with pytest.raises(Exception, match="sets resume, which this command cannot honour: an interrupted cell is "
                                        "rerun from its start; remove it"):
        parse_config(sweep.SweepConfig, make_parser(sweep.SweepConfig, ""), ["--config", str(file)])


def test_a_training_option_with_several_values_is_a_grid_axis(tmp_path, tiny_policy, tiny_reward):
    # soft labels are read by sigmoid only: ipo gets one cell, sigmoid one per value
    args = sweep_args(tmp_path, tiny_policy, tiny_reward, "--losses", "sigmoid", "ipo", "--seeds", "0",
                      "--soft-labels", "false", "true")
    assert commands.sweep(args) == 0
    names = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert names == ["ipo_beta0.1_lr0.05_seed0_rounds1", "sigmoid_beta0.1_lr0.05_seed0_rounds1_soft_labelsFalse",
                     "sigmoid_beta0.1_lr0.05_seed0_rounds1_soft_labelsTrue"]
    hard, soft = (json.loads((tmp_path / "cells" / name / "cell.json").read_text()) for name in names[1:])
    assert (hard["settings"]["soft_labels"], soft["settings"]["soft_labels"]) == (False, True)
    assert hard["final"]["kl"] != soft["final"]["kl"]  # same data and seed: the labels changed the training
    report = (tmp_path / "report.md").read_text()
    assert "| sigmoid, soft_labels false | 0.1 |" in report and "| sigmoid, soft_labels true | 0.1 |" in report
    # what each cell's method minimises: only soft-label DPO has the ceiling's policy as its optimum
    assert "| sigmoid, soft labels | yes (soft labels) |" in report
    assert "| sigmoid | no: hard labels push the margin up without end |" in report
    assert "| ipo | no: a fixed margin 1/(2β) per pair |" in report


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweep").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_config_is_valid_and_trains_the_standard_methods(path):
    """Each committed sweep config loads and validates, and trains every weight (the standard recipe)."""
    from sentiment_dpo.config_parser import load_yaml_config

    config = sweep.SweepConfig(**load_yaml_config(str(path), sweep.SweepConfig))
    assert config.logit_bias == [None] and config.recipe in ([None], ["standard"])
    assert sweep.training_config(config, sweep.grid(config)[0]).logit_bias is False
