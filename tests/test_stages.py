"""Each stage as the user runs it (the scripts' main()), on tiny models, including the bad inputs."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sentiment_dpo import commands, layout
from conftest import ROOT
from sentiment_dpo import files
from sentiment_dpo.evaluation.ceiling import gain_share, gain_share_text
from sentiment_dpo.evaluation.ceiling_samples import points_from_summary
from sentiment_dpo.embedded.corpus import cache_dir

GEN_ARGS = ["--num-samples", "24", "--samples-per-prompt", "4", "--max-new-tokens", "6", "--batch-size", "8"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_policy, tiny_reward):
    """A run directory after stages 1 and 2."""
    path = tmp_path_factory.mktemp("run")
    assert commands.generate(["--run-dir", str(path), "--policy", str(tiny_policy), "--reward", str(tiny_reward),
                                 *GEN_ARGS]) == 0
    assert commands.pairs(["--run-dir", str(path), "--num-pairs", "16", "--strategy", "random"]) == 0
    return path


def test_generation_rows_and_config(run_dir, tiny_policy):
    rows = [json.loads(line) for line in (run_dir / layout.GENERATIONS).read_text().splitlines()]
    assert len(rows) == 24
    assert set(rows[0]) >= {"prompt", "completion", "reward", "p_positive", "policy", "reward_model", "seed",
                            "sampling"}
    assert rows[0]["sampling"]["top_k"] == 0 and rows[0]["sampling"]["top_p"] == 1.0
    assert all(0.0 <= r["p_positive"] <= 1.0 for r in rows)
    config = files.read_yaml(run_dir / layout.GENERATION_CONFIG, "")
    assert config["policy"] == str(tiny_policy) and config["num_samples"] == 24


def test_generation_is_reproducible(run_dir, tiny_policy, tiny_reward, tmp_path):
    shutil.rmtree(cache_dir() / "generations")  # drawn again, not served from the cache
    assert commands.generate(["--run-dir", str(tmp_path), "--policy", str(tiny_policy), "--reward",
                                 str(tiny_reward), *GEN_ARGS]) == 0
    assert (tmp_path / layout.GENERATIONS).read_text() == (run_dir / layout.GENERATIONS).read_text()


def test_a_second_run_dir_reuses_stage_1s_rows_and_a_changed_reward_never_does(run_dir, tiny_policy, tiny_reward,
                                                                              tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from sentiment_dpo.stages import generate

    calls = []
    original = generate.sample_and_score
    monkeypatch.setattr(generate, "sample_and_score", lambda *a, **k: calls.append(1) or original(*a, **k))
    reward = tmp_path / "reward"
    shutil.copytree(tiny_reward, reward)
    args = ["--policy", str(tiny_policy), "--reward", str(reward), *GEN_ARGS]
    assert commands.generate(["--run-dir", str(tmp_path / "a"), *args]) == 0
    assert commands.generate(["--run-dir", str(tmp_path / "b"), *args]) == 0
    assert len(calls) == 1
    assert (tmp_path / "a" / layout.GENERATIONS).read_text() == (tmp_path / "b" / layout.GENERATIONS).read_text()
    model = AutoModelForSequenceClassification.from_pretrained(reward)
    with torch.no_grad():
        model.classifier.weight[1].sub_(1.0)  # the same folder, another reward
    model.save_pretrained(reward)
    assert commands.generate(["--run-dir", str(tmp_path / "c"), *args]) == 0
    assert len(calls) == 2
    rewards = [[row["reward"] for row in files.read_jsonl(tmp_path / d / layout.GENERATIONS, (), "")] for d in "ac"]
    assert rewards[0] != rewards[1]


def test_training_sees_exactly_the_sampled_tokens(run_dir, tiny_policy, tmp_path):
    """prompt ids as the sampler built them, then the sampled completion ids: no EOS added, no re-tokenization."""
    import torch

    from sentiment_dpo.config import TrainingConfig
    from sentiment_dpo.methods.fast_dpo import FastDPOTrainer
    from sentiment_dpo.models import load_policy, prompt_ids
    from sentiment_dpo.methods.pair_methods import dpo_config
    from sentiment_dpo.stages.train import pairs_dataset, read_pairs

    policy = load_policy(str(tiny_policy), torch.device("cpu"))
    generations = {(r["prompt"], r["completion"]): r["completion_ids"]
                   for r in files.read_jsonl(run_dir / layout.GENERATIONS, ("completion_ids",), "")}
    pairs = read_pairs(run_dir / layout.PAIRS)
    trainer = FastDPOTrainer(model=policy.model, args=dpo_config(TrainingConfig(run_dir=str(tmp_path)), tmp_path,
                                                                True),
                             train_dataset=pairs_dataset(pairs, policy.tokenizer), processing_class=policy.tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(pairs))])
    eos = policy.tokenizer.eos_token_id
    cut_without_eos = 0
    for i, pair in enumerate(pairs):
        row = trainer.train_dataset[i]
        assert row["prompt_ids"] == prompt_ids(policy.tokenizer, pair["prompt"])
        for side in ("chosen", "rejected"):
            sampled = generations[(pair["prompt"], pair[side])]
            assert row[f"{side}_ids"] == sampled
            cut_without_eos += sampled[-1] != eos
        # the collated sequence TRL feeds the model: prompt + chosen, then padding
        sequence = row["prompt_ids"] + row["chosen_ids"]
        assert batch["input_ids"][i, : len(sequence)].tolist() == sequence
    assert cut_without_eos  # samples cut at --max-new-tokens stay without an EOS


def test_pairs_load_with_datasets(run_dir):
    from datasets import load_dataset

    pairs = load_dataset("json", data_files=str(run_dir / layout.PAIRS), split="train")
    assert len(pairs) == 16
    assert all(c != r for c, r in zip(pairs["chosen"], pairs["rejected"]))
    assert all(cr > rr for cr, rr in zip(pairs["chosen_reward"], pairs["rejected_reward"]))


METRICS_ARGS = ["--num-prompts", "6", "--batch-size", "8", "--ceiling-samples", "4"]


def test_train_then_metrics(run_dir, tiny_judge):
    # a step large enough to move every weight measurably
    assert commands.train(["sigmoid", "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                              "--learning-rate", "0.01"]) == 0
    model_dir = run_dir / "models" / "sigmoid"
    assert (model_dir / "config.json").exists() and (model_dir / "tokenizer_config.json").exists()
    provenance = files.read_yaml(model_dir / "training.config.yaml", "")["provenance"]
    assert provenance["reference_logps"].startswith("$SENTIMENT_DPO_CACHE/reference_logps/")  # the cache entry
    assert commands.evaluate(["sigmoid", "--run-dir", str(run_dir), "--judge", str(tiny_judge),
                                   *METRICS_ARGS]) == 0
    metrics = json.loads((run_dir / "results" / "sigmoid" / "metrics.json").read_text())
    # the one evaluator's metric set, judge included, for both models
    for name in ("reference", "policy"):
        assert set(metrics[name]) >= {"reward_mean", "reward_std", "p_positive_mean", "positive_rate", "distinct_1",
                                      "distinct_2", "distinct_3", "token_entropy", "self_bleu",
                                      "reference_perplexity", "judge_p_positive_mean"}
    # a moved policy's log-ratios vary (a policy scored against itself gives all zeros); the k1 estimate's sign on
    # 6 prompts is sampling noise (-0.07 ± 0.10 nats on one CPU, +0.20 ± 0.04 on another), so it is not asserted
    assert math.isfinite(metrics["kl"]) and metrics["kl_standard_error"] > 1e-3
    assert metrics["provenance"]["judge"] == str(tiny_judge)
    samples = files.read_jsonl(run_dir / "results" / "sigmoid" / "samples.jsonl", ("model", "judge_p_positive"), "")
    policy_judge = [r["judge_p_positive"] for r in samples if r["model"] == "policy"]
    assert metrics["policy"]["judge_p_positive_mean"] == pytest.approx(sum(policy_judge) / len(policy_judge))
    # the ceiling: 4 reference samples on each of the 6 prompts, cached for the next loss
    ceiling_rows = files.read_jsonl(run_dir / "results" / "reference" / "ceiling_samples.jsonl", ("reward",), "")
    assert len(ceiling_rows) == 24
    assert metrics["ceiling"]["optimum"][0]["reward"] == pytest.approx(sum(r["reward"] for r in ceiling_rows) / 24)
    assert [p["label"] for p in metrics["ceiling"]["best_of_n"]] == ["n=1", "n=2", "n=4"]
    assert metrics["kl_overhead_text"] in ("outside the trusted range", "no reward gain", "no measurable drift") \
        or metrics["kl_overhead"] > 0
    optimum, _ = points_from_summary(metrics["ceiling"])
    share = gain_share(optimum, metrics["kl"], metrics["policy"]["reward_mean"])
    drift = abs(metrics["kl"]) >= metrics["kl_standard_error"]  # within one standard error nothing is priced
    assert metrics["ceiling_gain_share_text"] == (gain_share_text(share) if drift else "no measurable drift")
    assert metrics["ceiling_gain_share"] == (None if not drift or share is None or math.isnan(share)
                                             else pytest.approx(share))
    for png in ("reward_hist.png", "diversity.png", "frontier.png"):
        assert (run_dir / "results" / "sigmoid" / png).read_bytes()[:4] == b"\x89PNG"
    card = (model_dir / "README.md").read_text()  # the model card, with the evaluation once it exists
    assert "`sigmoid` policy" in card and "| β | 0.5 |" in card and "from_pretrained" in card
    assert f"KL to the reference: {metrics['kl']:.2f} nats" in card
    assert f"| this policy | {metrics['policy']['reward_mean']:.2f} |" in card
    stamp = (run_dir / "results" / "reference" / "ceiling_samples.jsonl").stat().st_mtime_ns
    assert commands.evaluate(["sigmoid", "--run-dir", str(run_dir), "--judge", str(tiny_judge),
                                   *METRICS_ARGS]) == 0
    assert (run_dir / "results" / "reference" / "ceiling_samples.jsonl").stat().st_mtime_ns == stamp  # reused


@pytest.mark.parametrize("method", ["rloo", "grpo", "online_dpo"])
def test_online_methods_train_and_are_evaluated(run_dir, tiny_policy, method):
    import torch
    from transformers import AutoModelForCausalLM

    generations = ["--num-generations", "2"] if method != "online_dpo" else []  # online_dpo samples two
    assert commands.train([method, "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                              *generations, "--learning-rate", "0.05"]) == 0
    model_dir = run_dir / "models" / method
    trained = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    start = AutoModelForCausalLM.from_pretrained(tiny_policy).state_dict()
    assert any(not torch.equal(start[name], trained[name]) for name in start)
    assert files.read_yaml(model_dir / "training.config.yaml", "")["provenance"]["num_prompts"] == 6
    log = json.loads((model_dir / "training_log.json").read_text())
    assert log[-1]["step"] == 2
    assert commands.evaluate([method, "--run-dir", str(run_dir), "--judge", "none", *METRICS_ARGS]) == 0
    metrics = json.loads((run_dir / "results" / method / "metrics.json").read_text())
    assert metrics["kl"] != 0.0 and "judge_p_positive_mean" not in metrics["policy"]


@pytest.mark.parametrize("script", [commands.train, commands.evaluate])
def test_loss_is_never_assumed(run_dir, script, capsys):
    assert script(["--run-dir", str(run_dir)]) == 2
    assert "LOSS is required" in capsys.readouterr().err


def test_unknown_loss_fails_at_once_listing_valid_ones(run_dir, capsys):
    assert commands.train(["sigmod", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown loss 'sigmod'" in err and "sigmoid" in err and "hinge" in err


def test_missing_input_names_the_stage_to_run_first(tmp_path, capsys):
    assert commands.pairs(["--run-dir", str(tmp_path)]) == 2
    assert "run `python3 text_generation.py` first" in capsys.readouterr().err
    (tmp_path / "data").mkdir()
    (tmp_path / layout.GENERATION_CONFIG).write_text("policy: x\nmax_new_tokens: 4\n")
    assert commands.train(["hinge", "--run-dir", str(tmp_path)]) == 2
    assert "run `python3 prepare_dataset.py` first" in capsys.readouterr().err
    assert commands.evaluate(["hinge", "--run-dir", str(tmp_path)]) == 2
    assert "run `python3 main.py hinge` first" in capsys.readouterr().err


def test_corrupt_line_and_missing_columns_keep_earlier_outputs(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "data").mkdir(parents=True)
    good_lines = (run_dir / layout.GENERATIONS).read_text().splitlines()
    (bad / layout.GENERATIONS).write_text("\n".join([good_lines[0], good_lines[1][:30], *good_lines[2:]]) + "\n")
    (bad / layout.PAIRS).write_text("earlier pairs\n")
    assert commands.pairs(["--run-dir", str(bad)]) == 2
    assert "line 2 is not valid JSON" in capsys.readouterr().err
    assert (bad / layout.PAIRS).read_text() == "earlier pairs\n"  # nothing earlier lost

    row = json.loads(good_lines[0])
    del row["reward"]
    (bad / layout.GENERATIONS).write_text(json.dumps(row) + "\n")
    assert commands.pairs(["--run-dir", str(bad)]) == 2
    assert "line 1 lacks column(s) reward" in capsys.readouterr().err


def test_too_many_pairs(run_dir, capsys):
    before = (run_dir / layout.PAIRS).read_text()
    assert commands.pairs(["--run-dir", str(run_dir), "--num-pairs", "100000", "--strategy", "random"]) == 2
    assert "asked for 100000 pairs" in capsys.readouterr().err
    # the tiny reward's scores are close: no margin pair at all, and the hint says what to change
    assert commands.pairs(["--run-dir", str(run_dir), "--num-pairs", "4", "--strategy", "margin",
                                 "--margin", "5"]) == 2
    assert "use a lower --margin or --strategy random" in capsys.readouterr().err
    assert (run_dir / layout.PAIRS).read_text() == before


@pytest.mark.parametrize("script", ["text_generation.py", "prepare_dataset.py", "main.py", "calculate_metrics.py",
                                    "run_pipeline.py", "scripts/build_embedded_models.py", "scripts/check_targets.py",
                                    "scripts/compare_runs.py", "scripts/kernel_fingerprint.py"])
def test_help(script):
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_pipeline_help_states_the_defaults_it_runs_with():
    """The help once promised `sigmoid hinge` while an unset --losses trained sigmoid alone."""
    from sentiment_dpo.stages.pipeline import PipelineConfig

    default = PipelineConfig()
    from sentiment_dpo.commands import pipeline_parser

    help_text = " ".join(pipeline_parser().format_help().split())
    assert f"loss types to train (default: {' '.join(default.losses)})" in help_text
    assert f"(default: {default.run_dir})" in help_text and f"(default: {default.preset})" in help_text
    assert default.losses == ["sigmoid", "hinge"]  # the seed experiment: DPO and the SLiC-style hinge


def test_whole_pipeline(tmp_path, tiny_policy, tiny_reward):
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps({
        "losses": ["sigmoid", "hinge"],
        "generation": {"policy": str(tiny_policy), "reward": str(tiny_reward), "num_samples": 24,
                       "samples_per_prompt": 4, "max_new_tokens": 6, "batch_size": 8},
        "pairs": {"num_pairs": 12, "strategy": "random"},
        "training": {"max_steps": 2, "batch_size": 4},
        "metrics": {"num_prompts": 4, "batch_size": 8, "judge": str(tiny_reward), "ceiling_samples": 4},
    }))
    assert commands.pipeline(["--config", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    summary = (tmp_path / "run" / "SUMMARY.md").read_text()
    assert "| sigmoid | policy |" in summary and "| hinge | policy |" in summary
    assert "results/hinge/reward_hist.png" in summary
    # the ceiling and best-of-n beside the trained losses, each loss with its KL overhead
    assert "## The ceiling" in summary and "| optimum β=∞ | 0.00 |" in summary and "| best-of-4 | ≤ " in summary
    for loss in ("sigmoid", "hinge"):
        metrics = json.loads((tmp_path / "run" / "results" / loss / "metrics.json").read_text())
        assert f"| {metrics['kl_overhead_text']} | {metrics['ceiling_gain_share_text']} |" in summary
        # both KL estimates with their intervals; the Rao-Blackwellised one is `kl`, the mean of the samples' token KLs
        rows = [json.loads(line) for line in (tmp_path / "run" / "results" / loss / "samples.jsonl").open()]
        policy = [r for r in rows if r["model"] == "policy"]
        assert metrics["kl"] == pytest.approx(sum(r["token_kl"] for r in policy) / len(policy))
        assert metrics["kl_monte_carlo"] == pytest.approx(sum(r["log_ratio"] for r in policy) / len(policy))
        assert {"kl_ci95", "kl_monte_carlo_ci95"} <= set(metrics["intervals"])
        assert f"- {loss}: Rao-Blackwellised {metrics['kl']:.2f}" in summary
    assert (tmp_path / "run" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    # what the numbers look like: a few held-out prompts, the reference's sample and each policy's (same seed)
    samples = summary.split("## Samples", 1)[1].split("## Targets", 1)[0]
    first = json.loads((tmp_path / "run" / "results" / "hinge" / "samples.jsonl").read_text().splitlines()[0])
    assert f"**{first['prompt']}**" in samples and samples.count("| reference | ") == 4
    assert samples.count("| sigmoid | ") == 4 and samples.count("| hinge | ") == 4
    # the policy's point carries its 95% interval over prompts, the reference's none
    metrics = json.loads((tmp_path / "run" / "results" / "sigmoid" / "metrics.json").read_text())
    low, high = metrics["intervals"]["p_positive_mean_ci95"]
    assert low <= metrics["policy"]["p_positive_mean"] <= high
    assert f"{metrics['policy']['p_positive_mean']:.3f} [{low:.3f}, {high:.3f}]" in summary
    # the timings name the machine they were measured on (they compare only on one)
    timings = json.loads((tmp_path / "run" / "timings.json").read_text())
    assert list(timings["seconds"]) == ["text_generation", "prepare_dataset", "main sigmoid",
                                        "calculate_metrics sigmoid", "main hinge", "calculate_metrics hinge", "total"]
    assert timings["machine"]["cores"] == os.cpu_count() and timings["machine"]["cpu"]
    assert f"On {timings['machine']['cpu']} ({os.cpu_count()} cores" in summary.split("## Timings", 1)[1]


def test_too_long_generation_for_the_model_is_refused(tmp_path, tiny_policy, tiny_reward, capsys):
    # the tiny policy has 64 positions
    assert commands.generate(["--run-dir", str(tmp_path), "--policy", str(tiny_policy), "--reward",
                                 str(tiny_reward), "--num-samples", "4", "--max-new-tokens", "100"]) == 2
    assert "lower --max-new-tokens" in capsys.readouterr().err
    assert not (tmp_path / layout.GENERATIONS).exists()


def test_interrupted_training_resumes_from_its_last_complete_checkpoint(run_dir, monkeypatch, capsys, caplog):
    from sentiment_dpo.stages import train

    assert commands.train(["ipo", "--run-dir", str(run_dir), "--resume"]) == 2
    assert "no complete checkpoint to resume from" in capsys.readouterr().err

    def crash(*_):
        raise KeyboardInterrupt  # the run is killed after its checkpoints were written

    monkeypatch.setattr(train.files, "replace_dir_atomic", crash)
    assert commands.train(["ipo", "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                           "--save-steps", "1"]) == 130
    assert "the checkpoint of step 2 is kept" in capsys.readouterr().err
    checkpoints = run_dir / "models" / ".ipo.checkpoints"
    assert (checkpoints / "checkpoint-2").exists()
    monkeypatch.undo()
    caplog.set_level("INFO", logger="sentiment_dpo.stages.train")
    # killed while saving checkpoint 2: its trainer_state.json (written last) is cut short
    state = checkpoints / "checkpoint-2" / "trainer_state.json"
    state.write_text(state.read_text()[:20])

    from trl import DPOTrainer

    steps_run = []
    original_step = DPOTrainer.training_step
    monkeypatch.setattr(DPOTrainer, "training_step", lambda self, *a, **k: steps_run.append(1) or original_step(
        self, *a, **k))
    assert commands.train(["ipo", "--run-dir", str(run_dir), "--max-steps", "3", "--batch-size", "4",
                              "--save-steps", "1", "--resume"]) == 0
    assert len(steps_run) == 2  # continued from step 1, the last complete checkpoint, not from scratch
    assert "skipping" in caplog.text and "checkpoint-2: its save did not finish" in caplog.text
    assert "resuming from step 1" in caplog.text
    log = json.loads((run_dir / "models" / "ipo" / "training_log.json").read_text())
    assert log[-1]["step"] == 3
    assert not checkpoints.exists()  # a finished run leaves nothing to resume


def test_lora_training_saves_a_merged_plain_model(run_dir, tiny_policy):
    import torch
    from transformers import AutoModelForCausalLM

    assert commands.train(["hinge", "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                              "--lora-rank", "4", "--learning-rate", "0.05"]) == 0
    model_dir = run_dir / "models" / "hinge"
    assert not (model_dir / "adapter_config.json").exists()
    trained = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    start = AutoModelForCausalLM.from_pretrained(tiny_policy).state_dict()
    assert set(trained) == set(start)  # no adapter weights left over
    changed = {name for name in start if not torch.equal(start[name], trained[name])}
    # LoRA touches the attention and MLP projections only: embeddings and layer norms stay as they were
    assert changed and all(name.endswith(("attn.weight", "proj.weight", "fc.weight")) for name in changed), changed
    assert files.read_yaml(model_dir / "training.config.yaml", "")["lora_rank"] == 4


@pytest.mark.parametrize("reward", ["NaN", "Infinity", "true", '"high"'])
def test_non_finite_or_non_numeric_rewards_are_refused(run_dir, tmp_path, reward, capsys):
    lines = (run_dir / layout.GENERATIONS).read_text().splitlines()
    row = json.loads(lines[1])
    broken = json.dumps(row).replace(json.dumps(row["reward"]), reward, 1)
    (tmp_path / "data").mkdir()
    (tmp_path / layout.GENERATIONS).write_text("\n".join([lines[0], broken, *lines[2:]]) + "\n")
    assert commands.pairs(["--run-dir", str(tmp_path), "--num-pairs", "4", "--strategy", "random"]) == 2
    err = capsys.readouterr().err
    assert "line 2: reward must be a finite number" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / layout.PAIRS).exists()


@pytest.mark.parametrize("change, message", [
    (lambda pair: pair | {"rejected": pair["chosen"], "rejected_ids": pair["chosen_ids"]},
     "chosen and rejected are the same"),
    (lambda pair: pair | {"chosen": "", "chosen_ids": []}, "a side is empty"),
])
def test_degenerate_pairs_are_refused_before_training(run_dir, tmp_path, change, message, capsys):
    (tmp_path / "data").mkdir()
    for name in (layout.GENERATIONS, layout.GENERATION_CONFIG):
        (tmp_path / name).write_bytes((run_dir / name).read_bytes())
    pairs = [json.loads(line) for line in (run_dir / layout.PAIRS).read_text().splitlines()]
    pairs[2] = change(pairs[2])
    files.write_jsonl(tmp_path / layout.PAIRS, pairs)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1"]) == 2
    assert f"line 3: {message}" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_a_non_utf8_jsonl_file_is_one_line(run_dir, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / layout.GENERATIONS).write_bytes((run_dir / layout.GENERATIONS).read_bytes() + b'{"prompt": "\xff"}\n')
    assert commands.pairs(["--run-dir", str(tmp_path)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_a_diverging_training_stops_and_keeps_the_previous_model(run_dir, capsys):
    assert commands.train(["hinge", "--run-dir", str(run_dir), "--max-steps", "1", "--batch-size", "4"]) == 0
    model_file = run_dir / "models" / "hinge" / "model.safetensors"
    before = model_file.read_bytes()
    # a step size no optimiser survives: the weights overflow and the loss turns NaN
    assert commands.train(["hinge", "--run-dir", str(run_dir), "--max-steps", "3", "--batch-size", "4",
                              "--learning-rate", "1e38", "--warmup-ratio", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "hinge training diverged" in err and "the previous model is kept" in err and len(err.splitlines()) == 1
    assert model_file.read_bytes() == before
    assert not list((run_dir / "models").glob(".hinge.staging*"))


def test_a_second_writer_of_the_same_output_is_refused_and_a_stale_lock_is_taken_over(run_dir, capsys):
    import os
    import subprocess

    lock = run_dir / "models" / ".hinge.lock"
    lock.parent.mkdir(exist_ok=True)
    # a live process holds the lock: refused at once, in one line, nothing touched
    holder = subprocess.Popen(["sleep", "30"])
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename}))
        assert commands.train(["hinge", "--run-dir", str(run_dir), "--max-steps", "1", "--batch-size", "4"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"is being written by process {holder.pid}" in err and len(err.splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    # its process is gone (a crash): the lock is stale and taken over; released at the end
    assert commands.train(["hinge", "--run-dir", str(run_dir), "--max-steps", "1", "--batch-size", "4"]) == 0
    assert not lock.exists()


def test_a_classifier_is_not_a_policy_and_a_policy_is_not_a_reward(tmp_path, tiny_policy, tiny_reward, capsys):
    assert commands.generate(["--run-dir", str(tmp_path), "--policy", str(tiny_reward), "--reward",
                                 str(tiny_reward), "--num-samples", "4"]) == 2
    assert "is a BertForSequenceClassification, not a causal language model" in capsys.readouterr().err
    assert commands.generate(["--run-dir", str(tmp_path), "--policy", str(tiny_policy), "--reward",
                                 str(tiny_policy), "--num-samples", "4"]) == 2
    assert "is a GPT2LMHeadModel, not a sequence classifier" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_pair_longer_than_the_policys_context_is_refused(run_dir, tmp_path, tiny_policy, capsys):
    from transformers import AutoTokenizer

    (tmp_path / "data").mkdir()
    for name in (layout.GENERATIONS, layout.GENERATION_CONFIG):
        (tmp_path / name).write_bytes((run_dir / name).read_bytes())
    pairs = [json.loads(line) for line in (run_dir / layout.PAIRS).read_text().splitlines()]
    pairs[1]["chosen_ids"] = pairs[1]["chosen_ids"] * 40  # the tiny policy has 64 positions
    # text and ids agree (a long sample), so it is the length that is refused
    pairs[1]["chosen"] = AutoTokenizer.from_pretrained(tiny_policy).decode(pairs[1]["chosen_ids"],
                                                                           skip_special_tokens=True)
    files.write_jsonl(tmp_path / layout.PAIRS, pairs)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "line 2: prompt + completion is" in err and "the policy handles 64" in err


def test_a_file_system_error_is_one_line_and_loses_nothing(run_dir, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    for name in (layout.GENERATIONS, layout.GENERATION_CONFIG):
        (tmp_path / name).write_bytes((run_dir / name).read_bytes())
    (tmp_path / layout.PAIRS).mkdir()  # the output path is a folder: the write fails in the file system
    assert commands.pairs(["--run-dir", str(tmp_path), "--num-pairs", "4", "--strategy", "random"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pairs.jsonl" in err and "earlier artifacts are unchanged" in err
    assert (tmp_path / layout.GENERATIONS).read_bytes() == (run_dir / layout.GENERATIONS).read_bytes()


def test_hints_are_themselves_valid(tmp_path, tiny_policy, tiny_reward, capsys):
    common = ["--policy", str(tiny_policy), "--reward", str(tiny_reward), "--max-new-tokens", "6"]
    # one sample per prompt allows no pair: the hint is to sample more per prompt, not --num-pairs 0
    assert commands.generate(["--run-dir", str(tmp_path), *common, "--num-samples", "4",
                                 "--samples-per-prompt", "1"]) == 0
    assert commands.pairs(["--run-dir", str(tmp_path), "--num-pairs", "2"]) == 2
    err = capsys.readouterr().err
    assert "each prompt has one sample" in err and "--samples-per-prompt 8" in err and "--num-pairs 0" not in err
    # prompts longer than the context by themselves: no negative --max-new-tokens proposed
    assert commands.generate(["--run-dir", str(tmp_path / "long"), *common[:4], "--num-samples", "4",
                                 "--prompt-words", "7", "--max-new-tokens", "60"]) == 2
    err = capsys.readouterr().err
    assert "lower --max-new-tokens to" in err or "use fewer --prompt-words" in err
    assert "--max-new-tokens -" not in err


def test_a_truncated_model_file_is_one_line(tmp_path, tiny_policy, tiny_reward, capsys):
    import shutil

    broken = tmp_path / "policy"
    shutil.copytree(tiny_policy, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert commands.generate(["--run-dir", str(tmp_path / "run"), "--policy", str(broken), "--reward",
                                 str(tiny_reward), "--num-samples", "4"]) == 2
    assert "cannot load policy" in capsys.readouterr().err


def test_report_to_tensorboard_keeps_the_event_files_with_the_model(run_dir):
    assert commands.train(["hinge", "--run-dir", str(run_dir), "--max-steps", "2", "--batch-size", "4",
                              "--report-to", "tensorboard"]) == 0
    events = list((run_dir / "models" / "hinge" / "runs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert any("loss" in tag for tag in accumulator.Tags()["scalars"])


def test_gradient_accumulation_trains_to_the_same_weights_and_refuses_an_uneven_split(run_dir, tmp_path, capsys,
                                                                                       tiny_policy):
    """A batch of 8 pairs in 2 micro-batches of 4 is the same optimisation as the batch in one piece."""
    from safetensors.torch import load_file

    trained = {}
    for steps in (1, 2):
        run = tmp_path / f"accumulate{steps}"
        (run / "data").mkdir(parents=True)
        for name in (layout.GENERATIONS, layout.GENERATION_CONFIG, layout.PAIRS, layout.PAIRS_CONFIG):
            shutil.copy(run_dir / name, run / name)
        assert commands.train(["sigmoid", "--run-dir", str(run), "--batch-size", "8", "--max-steps", "2",
                               "--learning-rate", "1e-2", "--gradient-accumulation-steps", str(steps)]) == 0
        trained[steps] = load_file(str(run / "models" / "sigmoid" / "model.safetensors"))
        record = files.read_yaml(run / "models" / "sigmoid" / layout.TRAINING_CONFIG, "")
        assert record["gradient_accumulation_steps"] == steps
    initial = load_file(str(tiny_policy / "model.safetensors"))
    moved = 0.0
    for name, value in trained[1].items():
        assert torch.allclose(trained[2][name], value, atol=1e-5), name
        if name in initial:
            moved = max(moved, (value - initial[name]).abs().max().item())
    assert moved > 1e-3  # the two steps trained
    assert commands.train(["sigmoid", "--run-dir", str(run_dir), "--batch-size", "6",
                           "--gradient-accumulation-steps", "4"]) == 2
    assert "is not a multiple of --gradient-accumulation-steps 4; pass a batch size that is, e.g. 4" in \
        capsys.readouterr().err
