"""Inputs that disagree with themselves, errors that used to escape as tracebacks, hints that name what the stage
can do, options that do nothing, and a number that cannot be: each a one-line error (exit 2, nothing written or
moved) or a correct report."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_stages import run_dir  # noqa: F401  (fixture: a run directory after stages 1 and 2)

from sentiment_dpo import commands, layout
from sentiment_dpo import files
from sentiment_dpo.evaluation.ceiling_samples import against_ceiling
from sentiment_dpo.evaluation.ceiling import optimum_curve
from sentiment_dpo.evaluation.metrics import kl_standard_error, measurable_drift


def _copy_run(source, target, with_pairs: bool = True):
    (target / "data").mkdir(parents=True)
    pairs = (layout.PAIRS, layout.PAIRS_CONFIG) if with_pairs else ()
    for name in (layout.GENERATIONS, layout.GENERATION_CONFIG, *pairs):
        (target / name).write_bytes((source / name).read_bytes())


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("change, message", [
    # texts edited while the ids were kept: training would read ids that no longer say what the text says
    (lambda p: p | {"rejected": p["chosen"]}, "chosen and rejected are the same"),
    (lambda p: p | {"chosen": ""}, "chosen_ids decode to"),
    (lambda p: p | {"chosen": p["chosen"] + " and a very long tail the ids never said" * 20}, "chosen_ids decode to"),
    (lambda p: p | {"rejected": p["rejected"] + " !"}, "rejected_ids decode to"),
    (lambda p: p | {"chosen_reward": "high"}, "chosen_reward must be a finite number"),
    # chosen and rejected swapped: training would teach the reverse preference
    (lambda p: p | {"chosen_reward": p["rejected_reward"], "rejected_reward": p["chosen_reward"]},
     "chosen_reward"),
])
def test_a_pair_whose_texts_and_ids_disagree_is_refused(run_dir, tmp_path, change, message, capsys):  # noqa: F811
    _copy_run(run_dir, tmp_path)
    pairs = [json.loads(line) for line in (tmp_path / layout.PAIRS).read_text().splitlines()]
    pairs[2] = change(pairs[2])
    files.write_jsonl(tmp_path / layout.PAIRS, pairs)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1"]) == 2
    err = _one_line(capsys)
    assert f"line 3: {message}" in err and "rerun `python3 prepare_dataset.py`" in err
    assert not (tmp_path / "models").exists()


def test_a_pairs_file_with_every_pair_swapped_is_refused(run_dir, tmp_path, capsys):  # noqa: F811
    _copy_run(run_dir, tmp_path)
    pairs = [json.loads(line) for line in (tmp_path / layout.PAIRS).read_text().splitlines()]
    swapped = [p | {side: p[other] for side, other in (("chosen", "rejected"), ("rejected", "chosen"),
                                                       ("chosen_ids", "rejected_ids"), ("rejected_ids", "chosen_ids"),
                                                       ("chosen_reward", "rejected_reward"),
                                                       ("rejected_reward", "chosen_reward"))} for p in pairs]
    files.write_jsonl(tmp_path / layout.PAIRS, swapped)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1"]) == 2
    assert "line 1: chosen_reward" in _one_line(capsys) and not (tmp_path / "models").exists()


def ctrl_c_at(step: int):
    """A Trainer callback standing in for Ctrl-C at the end of optimizer step `step`."""
    from transformers import TrainerCallback

    class CtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    return CtrlC()


@pytest.mark.parametrize("save_steps", [0, 1])
def test_ctrl_c_during_training_says_what_was_kept_and_how_to_go_on(run_dir, tmp_path, capsys, monkeypatch,  # noqa: F811
                                                                      save_steps):
    from sentiment_dpo.stages import train

    _copy_run(run_dir, tmp_path)
    real = train.train_policy
    monkeypatch.setattr(train, "train_policy", lambda *args, **kwargs: real(*args, **kwargs | {"callbacks": [
        ctrl_c_at(2)]}))
    argv = ["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "3", "--batch-size", "4", "--save-steps",
            str(save_steps)]
    assert commands.train(argv) == 130
    err = _one_line(capsys)
    assert err.startswith("interrupted: training stopped;") and "models/sigmoid is as it was" in err
    assert not (tmp_path / "models" / "sigmoid").exists()
    if not save_steps:
        assert "kept nothing" in err and not any((tmp_path / "models").iterdir())
        return
    assert "the checkpoint of step 1 is kept" in err  # step 2 stopped before its save and "with --resume" in err
    monkeypatch.setattr(train, "train_policy", real)
    assert commands.train(argv + ["--resume"]) == 0
    assert (tmp_path / "models" / "sigmoid" / "model.safetensors").exists()


def test_a_generations_row_whose_text_and_ids_disagree_is_refused(run_dir, tmp_path, capsys):  # noqa: F811
    _copy_run(run_dir, tmp_path, with_pairs=False)
    rows = [json.loads(line) for line in (tmp_path / layout.GENERATIONS).read_text().splitlines()]
    rows[4]["completion"] = rows[4]["completion"] + " edited"
    files.write_jsonl(tmp_path / layout.GENERATIONS, rows)
    assert commands.pairs(["--run-dir", str(tmp_path), "--num-pairs", "4"]) == 2
    err = _one_line(capsys)
    assert "generations.jsonl line 5: completion_ids decode to" in err and "rerun `python3 text_generation.py`" in err
    assert not (tmp_path / layout.PAIRS).exists()


@pytest.mark.parametrize("field, value, message", [
    ("p_positive", '"x"', "p_positive must be a probability in [0, 1]"),
    ("p_positive", "1.5", "p_positive must be a probability in [0, 1]"),
    ("completion_ids", '"abc"', "completion_ids must be a list of token ids"),
])
def test_every_numeric_field_of_a_generations_row_is_checked(run_dir, tmp_path, field, value, message,  # noqa: F811
                                                              capsys):
    lines = (run_dir / layout.GENERATIONS).read_text().splitlines()
    row = json.loads(lines[1])
    broken = json.dumps(row | {field: "__value__"}).replace('"__value__"', value)
    (tmp_path / "data").mkdir()
    (tmp_path / layout.GENERATIONS).write_text("\n".join([lines[0], broken, *lines[2:]]) + "\n")
    assert commands.pairs(["--run-dir", str(tmp_path), "--num-pairs", "4"]) == 2
    assert f"line 2: {message}" in _one_line(capsys)
    assert not (tmp_path / layout.PAIRS).exists()


def test_a_full_disk_while_saving_the_model_is_one_line_and_leaves_nothing_behind(run_dir, tmp_path,  # noqa: F811
                                                                                   monkeypatch, capsys):
    import transformers.modeling_utils
    from safetensors import SafetensorError

    _copy_run(run_dir, tmp_path)

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                              'space left on device" })')

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1", "--batch-size", "4"]) == 2
    err = _one_line(capsys)
    assert "No space left on device; free some disk space" in err and ".sigmoid.staging" in err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("script, argv", [(commands.train, ["sigmoid"]), (commands.generate, []),
                                          (commands.pairs, []), (commands.evaluate, ["sigmoid"])])
def test_every_stage_takes_the_same_range_of_seeds(script, argv, tmp_path, capsys):
    assert script([*argv, "--run-dir", str(tmp_path), "--seed", "99999999999"]) == 2
    assert "--seed must be at most 4294967295" in _one_line(capsys)


def test_a_pickled_or_nan_policy_is_one_line_at_stage_4(run_dir, tmp_path, capsys):  # noqa: F811
    from transformers import AutoModelForCausalLM

    _copy_run(run_dir, tmp_path)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1", "--batch-size", "4"]) == 0
    model_dir = tmp_path / "models" / "sigmoid"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight.fill_(float("nan"))
    model.save_pretrained(model_dir)
    assert commands.evaluate(["sigmoid", "--run-dir", str(tmp_path), "--judge", "none"]) == 2
    err = _one_line(capsys)
    assert "has non-finite weights" in err and "retrain it: `python3 main.py sigmoid`" in err
    # weights as a pickle, which torch's weights-only loader refuses: one line, not a traceback
    (model_dir / "model.safetensors").unlink()
    with open(model_dir / "pytorch_model.bin", "wb") as handle:
        import pickle

        pickle.dump({"weights": shutil.rmtree}, handle)  # a pickle that names a function: refused as unsafe
    assert commands.evaluate(["sigmoid", "--run-dir", str(tmp_path), "--judge", "none"]) == 2
    err = _one_line(capsys)
    assert "cannot load policy" in err and "retrain it: `python3 main.py sigmoid`" in err
    assert not (tmp_path / "results" / "sigmoid").exists()


def test_a_file_where_the_results_go_is_refused_not_moved(run_dir, tmp_path, capsys):  # noqa: F811
    _copy_run(run_dir, tmp_path)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1", "--batch-size", "4"]) == 0
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "sigmoid").write_text("my notes")
    assert commands.evaluate(["sigmoid", "--run-dir", str(tmp_path), "--judge", "none"]) == 2
    assert "is a file, where this stage writes a folder; remove the file in the way" in _one_line(capsys)
    assert (tmp_path / "results" / "sigmoid").read_text() == "my notes"
    assert not (tmp_path / "results" / ".sigmoid.old").exists()


def test_hints_name_what_the_stage_can_do(run_dir, tmp_path, tiny_policy, capsys):  # noqa: F811
    # a language model recorded as the reward: stage 4 has no --reward, the fix is stage 1's
    _copy_run(run_dir, tmp_path)
    assert commands.train(["sigmoid", "--run-dir", str(tmp_path), "--max-steps", "1", "--batch-size", "4"]) == 0
    record = files.read_yaml(tmp_path / layout.GENERATION_CONFIG, "")
    files.write_yaml(tmp_path / layout.GENERATION_CONFIG, record | {"reward": str(tiny_policy)})
    assert commands.evaluate(["sigmoid", "--run-dir", str(tmp_path), "--judge", "none"]) == 2
    err = _one_line(capsys)
    assert "is a GPT2LMHeadModel, not a sequence classifier" in err and "--reward" not in err.split(";")[0]
    assert "rerun `python3 text_generation.py`" in err and "(e.g. --reward embedded)" not in err
    # too few held-out prompts: the fix is stage 4's --num-prompts, not "fewer samples"
    files.write_yaml(tmp_path / layout.GENERATION_CONFIG, record)
    assert commands.evaluate(["sigmoid", "--run-dir", str(tmp_path), "--judge", "none",
                                   "--num-prompts", "100000"]) == 2
    assert "use fewer --num-prompts" in _one_line(capsys)


def test_a_margin_the_strategy_does_not_read_is_refused(run_dir, tmp_path, capsys):  # noqa: F811
    _copy_run(run_dir, tmp_path, with_pairs=False)
    assert commands.pairs(["--run-dir", str(tmp_path), "--strategy", "random", "--margin", "0.1"]) == 2
    assert "--margin is read by --strategy margin only, not 'random'" in _one_line(capsys)
    assert not (tmp_path / layout.PAIRS).exists()


def test_kl_standard_error_and_drift_by_hand():
    # log-ratios 0, 0.2, -0.1, 0.3: mean 0.1, sample variance ((0.1² + 0.1² + 0.2² + 0.2²) / 3) = 0.1 / 3
    assert kl_standard_error([0.0, 0.2, -0.1, 0.3]) == pytest.approx((0.1 / 3 / 4) ** 0.5)
    assert not measurable_drift(-0.01, 0.02) and measurable_drift(0.05, 0.02) and measurable_drift(-0.05, 0.02)


def test_a_policy_that_did_not_move_has_no_measurable_drift_never_a_negative_overhead():
    ceiling = [[float(i % 4) for i in range(8)] for _ in range(6)]
    optimum = optimum_curve(ceiling, [[0.5] * 8 for _ in ceiling])
    reward = optimum[0].reward + 0.05  # a little above the reference, at a KL of noise
    fields = against_ceiling(optimum, -0.01, reward, kl_standard_error=0.03)
    assert fields == {"kl_overhead": None, "kl_overhead_text": "no measurable drift", "ceiling_gain_share": None,
                      "ceiling_gain_share_text": "no measurable drift"}
    moved = against_ceiling(optimum, 0.5, reward, kl_standard_error=0.03)
    assert moved["kl_overhead"] is not None and moved["kl_overhead"] > 0
