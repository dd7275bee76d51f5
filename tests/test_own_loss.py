"""A user's pair loss from a file (`FILE.py:FUNCTION`): it trains through the same trainer as the built-in losses (a
re-statement of DPO trains to DPO's weights), its outputs carry its name and source, and every bad file is one
line, exit 2, with nothing already written replaced."""

import json
import math
import shutil

import pytest
import torch
from test_stages import GEN_ARGS, run_dir  # noqa: F401  (fixture: a run directory after stages 1 and 2)

from sentiment_dpo import commands, files, layout

DPO = '''
import torch.nn.functional as F


def dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """DPO's sigmoid loss, re-stated."""
    x = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    return -F.logsigmoid(x)


def margin_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    """DPO with a margin of 1 in the implicit reward."""
    x = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    return -F.logsigmoid(x - 1.0)


def soft(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta,
         soft_label):
    """Reads the soft label; records what it was given."""
    soft.seen.append(soft_label.clone())
    x = beta * ((policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps))
    return -soft_label * F.logsigmoid(x) - (1 - soft_label) * F.logsigmoid(-x)


soft.seen = []


def raises(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    raise KeyError("oops")


def two_args(policy_chosen_logps, beta):
    return policy_chosen_logps


def mean(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    return (policy_chosen_logps - policy_rejected_logps).mean()


def numbers(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    return [1.0] * len(policy_chosen_logps)


def nan(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    return (policy_chosen_logps - policy_rejected_logps).log()  # log of a negative number: NaN


def detached(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    return (policy_chosen_logps - policy_rejected_logps).detach()
'''
TRAIN = ["--max-steps", "3", "--batch-size", "4", "--learning-rate", "1e-2"]


@pytest.fixture
def losses(tmp_path):
    path = tmp_path / "my_losses.py"
    path.write_text(DPO)
    return path


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def copy_run(source, target):
    (target / "data").mkdir(parents=True)
    for name in (layout.GENERATIONS, layout.GENERATION_CONFIG, layout.PAIRS, layout.PAIRS_CONFIG):
        shutil.copy(source / name, target / name)


def test_a_restated_dpo_trains_to_dpos_weights_and_a_margin_to_others(run_dir, tmp_path, losses):  # noqa: F811
    copy_run(run_dir, tmp_path / "run")
    run = ["--run-dir", str(tmp_path / "run"), *TRAIN]
    assert commands.train(["sigmoid", *run]) == 0
    assert commands.train([f"{losses}:dpo", *run]) == 0
    assert commands.train([f"{losses}:margin_dpo", *run]) == 0
    builtin, own, margin = (weights(tmp_path / "run" / "models" / name) for name in ("sigmoid", "dpo", "margin_dpo"))
    moved = 0.0
    for name, value in builtin.items():
        assert torch.allclose(own[name], value, atol=1e-5), name
        moved = max(moved, (margin[name] - value).abs().max().item())
    assert moved > 1e-4  # the margin trains to other weights


def test_its_outputs_carry_its_name_source_and_hash_and_stage_4_its_ceiling(run_dir, tmp_path, losses,  # noqa: F811
                                                                           tiny_reward):
    copy_run(run_dir, tmp_path / "run")
    run = ["--run-dir", str(tmp_path / "run")]
    assert commands.train([f"{losses}:margin_dpo", "--method-name", "margin", *run, *TRAIN]) == 0
    folder = tmp_path / "run" / "models" / "margin"
    record = files.read_yaml(folder / layout.TRAINING_CONFIG, "")
    import hashlib

    assert record["provenance"]["own_loss"] == {"file": str(losses.resolve()), "function": "margin_dpo",
                                                "sha256": hashlib.sha256(losses.read_bytes()).hexdigest(),
                                                "copy": "my_losses.py"}
    assert (folder / "my_losses.py").read_bytes() == losses.read_bytes()
    assert "the loss `margin_dpo` of my_losses.py" in (folder / "README.md").read_text()
    assert commands.evaluate(["margin", *run, "--num-prompts", "4", "--batch-size", "8", "--judge", str(tiny_reward),
                              "--ceiling-samples", "4"]) == 0
    metrics = json.loads((tmp_path / "run" / "results" / "margin" / "metrics.json").read_text())
    assert metrics["loss"] == "margin" and "ceiling" in metrics and "kl_overhead" in metrics
    assert "judge_p_positive_mean" in metrics["policy"]


def test_the_soft_label_is_passed_only_to_a_signature_that_has_it(run_dir, tmp_path, losses):  # noqa: F811
    from sentiment_dpo.methods.own_loss import load_own_loss

    copy_run(run_dir, tmp_path / "run")
    assert commands.train([f"{losses}:soft", "--run-dir", str(tmp_path / "run"), *TRAIN]) == 0
    seen = load_own_loss(f"{losses}:soft").function.seen
    pairs = [json.loads(line) for line in (tmp_path / "run" / layout.PAIRS).read_text().splitlines()]
    expected = {round(1 / (1 + math.exp(p["rejected_reward"] - p["chosen_reward"])), 5)
                for p in pairs}
    given = {round(q, 5) for batch in seen[1:] for q in batch.tolist()}  # seen[0]: the check on a sample batch
    assert given and given <= expected


def test_the_pipeline_puts_it_beside_sigmoid_in_one_summary(tmp_path, tiny_policy, tiny_reward, losses):
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps({
        "losses": ["sigmoid", f"{losses}:margin_dpo"],
        "generation": {"policy": str(tiny_policy), "reward": str(tiny_reward), "num_samples": 24,
                       "samples_per_prompt": 4, "max_new_tokens": 6, "batch_size": 8},
        "pairs": {"num_pairs": 12, "strategy": "random"},
        "training": {"max_steps": 2, "batch_size": 4},
        "metrics": {"num_prompts": 4, "batch_size": 8, "judge": str(tiny_reward), "ceiling_samples": 4},
    }))
    assert commands.pipeline(["--config", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    summary = (tmp_path / "run" / "SUMMARY.md").read_text()
    assert "| sigmoid | policy |" in summary and "| margin_dpo | policy |" in summary
    assert (tmp_path / "run" / "results" / "margin_dpo" / "metrics.json").exists()


@pytest.mark.parametrize("function, says", [
    ("nowhere.py:dpo", "is not a file; pass FILE.py:FUNCTION with an existing Python file"),
    ("{file}:missing", "defines no function 'missing' (its functions: "),
    ("{file}:raises", "raised KeyError: 'oops'; fix the function"),
    ("{file}:two_args", "does not take the call `def FUNCTION(policy_chosen_logps"),
    ("{file}:mean", "of shape () for 3 pairs; return one float loss per pair"),
    ("{file}:numbers", "returned a list, not a tensor"),
    ("{file}:nan", "returned a non-finite loss (NaN or inf)"),
    ("{file}:detached", "returned losses without a gradient"),
    ("{file}:sigmoid", "is a built-in method; pass --method-name with another"),
    ("{file}:1bad", "is not FILE.py:FUNCTION"),
])
def test_a_bad_loss_file_is_one_line_exit_2_and_the_model_kept(run_dir, tmp_path, losses, capsys,  # noqa: F811
                                                               function, says):
    copy_run(run_dir, tmp_path / "run")
    folder = tmp_path / "run" / "models" / "dpo"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"an earlier model")
    name = ["--method-name", "dpo"] if "sigmoid" not in function and ":" in function else []
    spec = function.format(file=losses)
    assert commands.train([spec, *name, "--run-dir", str(tmp_path / "run"), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert (folder / "model.safetensors").read_bytes() == b"an earlier model"


def test_a_file_that_fails_to_import_and_an_option_it_does_not_read_are_one_line(run_dir, tmp_path,  # noqa: F811
                                                                                capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_anywhere\n")
    assert commands.train([f"{broken}:f", "--run-dir", str(run_dir), *TRAIN]) == 2
    assert "importing broken.py raised ModuleNotFoundError" in capsys.readouterr().err
    assert commands.train([f"{broken}:f", "--run-dir", str(run_dir), "--label-smoothing", "0.1"]) == 2
    assert "--label-smoothing does nothing for" in capsys.readouterr().err


def test_the_sweep_puts_it_on_the_frontier_and_retrains_it_when_the_file_changes(tmp_path, tiny_policy, tiny_reward,
                                                                                 losses):
    from test_sweep import sweep_args

    args = sweep_args(tmp_path / "sweep", tiny_policy, tiny_reward, "--losses", "sigmoid", f"{losses}:margin_dpo",
                      f"{losses}:soft", "--seeds", "0")  # soft: its pairs carry the soft label it reads
    assert commands.sweep(args) == 0
    cells = sorted(p.name for p in (tmp_path / "sweep" / "cells").iterdir())
    assert cells == ["margin_dpo_beta0.1_lr0.05_seed0_rounds1", "sigmoid_beta0.1_lr0.05_seed0_rounds1",
                     "soft_beta0.1_lr0.05_seed0_rounds1"]
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "| margin_dpo | 0.1 |" in report and "| margin_dpo | not known (your own loss) |" in report
    record = tmp_path / "sweep" / "cells" / cells[0] / "cell.json"
    before = json.loads(record.read_text())["settings"]["loss_sha256"]
    sigmoid = (tmp_path / "sweep" / "cells" / cells[1] / "cell.json").read_text()
    losses.write_text(DPO.replace("x - 1.0", "x - 2.0"))  # the same name, another loss: its cell trains again
    assert commands.sweep(args) == 0
    after = json.loads(record.read_text())["settings"]["loss_sha256"]
    assert after != before
    assert (tmp_path / "sweep" / "cells" / cells[1] / "cell.json").read_text() == sigmoid  # kept, not retrained
