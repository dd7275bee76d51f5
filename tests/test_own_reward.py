"""A reward or a judge from a file (`FILE.py:FUNCTION`, texts -> one float each): it scores stage 1's samples (the
rows hold exactly its values), the pairs, the training, stage 4 and its ceiling, and the sweep; the metrics only a
classifier has (p_positive) are left out and say why; the token-bias start refuses it; a changed file is another
reward to every cache; every bad function is one line, exit 2, with nothing already written replaced."""

import hashlib
import json

import pytest
from test_stages import GEN_ARGS

from sentiment_dpo import commands, files, layout

REWARDS = '''
def vowels(texts):
    """A rule, not a classifier: the share of vowels in each text, minus the share of spaces."""
    return [sum(c in "aeiou" for c in t) / max(len(t), 1) - t.count(" ") / max(len(t), 1) for t in texts]


def length(texts):
    return [len(t) / 10 for t in texts]


def short(texts):
    return [1.0] * (len(texts) - 1)


def words(texts):
    return ["good" for _ in texts]


def nan(texts):
    return [float("nan") for _ in texts]


def raises(texts):
    raise ValueError("no model here")


def a_bool(texts):
    return [True for _ in texts]
'''


def vowels(texts):  # the same rule as the file's, to check the rows against
    return [sum(c in "aeiou" for c in t) / max(len(t), 1) - t.count(" ") / max(len(t), 1) for t in texts]


@pytest.fixture
def rewards(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_reward_function_drives_the_four_stages_and_the_ceiling(tmp_path, tiny_policy, rewards):
    run = tmp_path / "run"
    args = ["--run-dir", str(run)]
    assert commands.generate([*args, "--policy", str(tiny_policy), "--reward", f"{rewards}:vowels", *GEN_ARGS]) == 0
    rows = read_jsonl(run / layout.GENERATIONS)
    assert [r["reward"] for r in rows] == pytest.approx(vowels([r["prompt"] + r["completion"] for r in rows]),
                                                        abs=1e-12)
    assert len({round(r["reward"], 6) for r in rows}) > 10 and all(r["p_positive"] is None for r in rows)
    record = files.read_yaml(run / layout.GENERATION_CONFIG, "")
    assert record["reward"] == f"{rewards.resolve()}:vowels"
    sha256 = hashlib.sha256(rewards.read_bytes()).hexdigest()
    assert record["provenance"]["reward_function"] == {"file": str(rewards.resolve()), "function": "vowels",
                                                       "sha256": sha256}
    assert commands.pairs([*args, "--num-pairs", "16", "--strategy", "random"]) == 0
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in read_jsonl(run / layout.PAIRS))
    assert commands.train(["sigmoid", *args, "--max-steps", "2", "--batch-size", "4"]) == 0
    assert commands.evaluate(["sigmoid", *args, "--num-prompts", "4", "--batch-size", "8", "--ceiling-samples", "4",
                              "--judge", f"{rewards}:length"]) == 0
    results = run / layout.results_dir("sigmoid")
    metrics = json.loads((results / layout.METRICS).read_text())
    for model in ("reference", "policy"):
        assert "p_positive_mean" not in metrics[model] and "positive_rate" not in metrics[model]
        assert "judge_p_positive_mean" not in metrics[model]
    samples = read_jsonl(results / layout.SAMPLES)
    texts = [s["prompt"] + s["completion"] for s in samples if s["model"] == "policy"]
    assert metrics["policy"]["judge_score_mean"] == pytest.approx(sum(len(t) / 10 for t in texts) / len(texts))
    assert "p_positive_delta" not in metrics and "p_positive_mean_ci95" not in metrics["intervals"]
    assert "ceiling" in metrics and metrics["ceiling"]["optimum"][0]["p_positive"] is None
    assert metrics["provenance"]["judge_function"]["function"] == "length"
    ceiling_rows = read_jsonl(run / layout.REFERENCE_RESULTS / layout.CEILING_SAMPLES)
    assert [r["reward"] for r in ceiling_rows] == pytest.approx(
        vowels([s["prompt"] + r["completion"] for r in ceiling_rows
                for s in [next(x for x in samples if x["prompt_index"] == r["prompt_index"])]]), abs=1e-12)
    assert not (results / "p_positive_hist.png").exists() and (results / "reward_hist.png").exists()


def test_a_changed_reward_file_is_another_reward_to_the_cache(tmp_path, tiny_policy, rewards):
    args = ["--policy", str(tiny_policy), "--reward", f"{rewards}:vowels", *GEN_ARGS]
    assert commands.generate(["--run-dir", str(tmp_path / "a"), *args]) == 0
    rewards.write_text(REWARDS.replace("- t.count(\" \") / max(len(t), 1) for t", "+ 1.0 for t", 1))
    assert commands.generate(["--run-dir", str(tmp_path / "b"), *args]) == 0
    first, second = (read_jsonl(tmp_path / name / layout.GENERATIONS) for name in ("a", "b"))
    keys = [files.read_yaml(tmp_path / name / layout.GENERATION_CONFIG, "")["provenance"]["generations_key"]
            for name in ("a", "b")]
    assert keys[0] != keys[1]
    assert [r["completion"] for r in first] == [r["completion"] for r in second]  # same samples, rescored
    assert [r["reward"] for r in second] != pytest.approx([r["reward"] for r in first])


def test_the_pipeline_summary_says_why_p_positive_is_missing(tmp_path, tiny_policy, rewards):
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps({
        "losses": ["sigmoid"],
        "generation": {"policy": str(tiny_policy), "reward": f"{rewards}:vowels", "num_samples": 24,
                       "samples_per_prompt": 4, "max_new_tokens": 6, "batch_size": 8},
        "pairs": {"num_pairs": 12, "strategy": "random"},
        "training": {"max_steps": 2, "batch_size": 4},
        "metrics": {"num_prompts": 4, "batch_size": 8, "judge": f"{rewards}:length", "ceiling_samples": 4},
    }))
    assert commands.pipeline(["--config", str(config), "--run-dir", str(tmp_path / "run")]) == 0
    summary = (tmp_path / "run" / "SUMMARY.md").read_text()
    assert "| judge score |" in summary and "is a function, whose values are not a classifier's probability" in summary
    policy_row = next(line for line in summary.splitlines() if line.startswith("| sigmoid | policy |"))
    assert policy_row.split("|")[4].strip() == "–"  # p_positive


def test_the_sweep_scores_with_it_and_reports_the_judge_score(tmp_path, tiny_policy, rewards):
    from test_sweep import sweep_args

    args = sweep_args(tmp_path / "sweep", tiny_policy, f"{rewards}:vowels", "--losses", "sigmoid", "--seeds", "0",
                      "--judge", f"{rewards}:length", "--ceiling-samples", "4")
    assert commands.sweep(args) == 0
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "judge score" in report and "judge_frontier.png" in report
    final = report[report.index("## Final checkpoints"):].splitlines()[2]
    assert "p_positive" not in final and "judge score" in final


def test_the_token_bias_start_refuses_a_reward_function(tmp_path, tiny_policy, rewards, capsys):
    run = tmp_path / "run"
    assert commands.generate(["--run-dir", str(run), "--policy", str(tiny_policy), "--reward", f"{rewards}:vowels",
                              *GEN_ARGS]) == 0
    assert commands.pairs(["--run-dir", str(run), "--num-pairs", "8", "--strategy", "random"]) == 0
    assert commands.train(["sigmoid", "--run-dir", str(run), "--recipe", "token-bias"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "is a function: use --recipe standard" in err
    assert not (run / "models").exists()
    assert commands.pipeline(["--run-dir", str(tmp_path / "other"), "--recipe", "token-bias", "--reward",
                              f"{rewards}:vowels"]) == 2
    assert "is a function: use --recipe standard" in capsys.readouterr().err
    assert not (tmp_path / "other" / "data").exists()  # refused before stage 1


@pytest.mark.parametrize("function, says", [
    ("{file}:short", "returned 2 values for 3 texts; return a list of one float per text"),
    ("{file}:words", "returned 'good' (str) for the text"),
    ("{file}:a_bool", "returned True (bool) for the text"),
    ("{file}:nan", "returned nan for the text"),
    ("{file}:raises", "raised ValueError: no model here; fix the function"),
    ("{file}:missing", "defines no function 'missing'"),
    ("nowhere.py:vowels", "nowhere.py is not a file"),
])
def test_a_bad_reward_function_is_one_line_exit_2_and_the_rows_kept(tmp_path, tiny_policy, rewards, capsys,
                                                                    function, says):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / layout.GENERATIONS).write_text("earlier rows\n")
    spec = function.format(file=rewards)
    assert commands.generate(["--run-dir", str(run), "--policy", str(tiny_policy), "--reward", spec,
                              *GEN_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert (run / layout.GENERATIONS).read_text() == "earlier rows\n"


def test_a_judge_function_that_fails_and_a_positive_label_for_a_function_are_one_line(tmp_path, tiny_policy, rewards,
                                                                                       capsys):
    assert commands.generate(["--run-dir", str(tmp_path / "run"), "--policy", str(tiny_policy), "--reward",
                              f"{rewards}:vowels", "--positive-label", "POSITIVE", *GEN_ARGS]) == 2
    assert "the reward" in capsys.readouterr().err
    assert commands.evaluate(["sigmoid", "--run-dir", str(tmp_path / "run"), "--judge", "my_judges.py:1bad"]) == 2
    assert "is not FILE.py:FUNCTION" in capsys.readouterr().err
