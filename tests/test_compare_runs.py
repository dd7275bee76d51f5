"""scripts/compare_runs.py: whether a rerun wrote the reference run's table byte for byte (or inside its intervals),
and what differs."""

import json
import subprocess
import sys

from conftest import ROOT

METRICS = {"loss": "sigmoid", "policy": {"p_positive_mean": 0.6318689760228153, "distinct_2": 0.8},
           "kl": 3.832155555486679, "intervals": {"kl_ci95": [3.45, 4.23], "p_positive_mean_ci95": [0.59, 0.67]}}


def write(run_dir, metrics: dict, loss: str = "sigmoid") -> None:
    folder = run_dir / "results" / loss
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))


def compare(reference, run, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_runs.py"), str(reference), str(run),
                           *flags], capture_output=True, text=True, timeout=60)


def test_identical_runs_pass(tmp_path):
    write(tmp_path / "a", METRICS)
    write(tmp_path / "b", METRICS)
    result = compare(tmp_path / "a", tmp_path / "b")
    assert result.returncode == 0 and result.stdout == "results/sigmoid/metrics.json: identical\n"


def test_a_value_off_in_the_last_digits_is_named_in_file_order(tmp_path):
    write(tmp_path / "a", METRICS)
    other = json.loads(json.dumps(METRICS))
    other["kl"] = 3.8321561  # another CPU's kernels
    other["intervals"]["kl_ci95"][1] = 4.24
    write(tmp_path / "b", other)
    result = compare(tmp_path / "a", tmp_path / "b")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["results/sigmoid/metrics.json: 2 values differ",
                                          "  kl: 3.832155555486679 -> 3.8321561",
                                          "  intervals.kl_ci95[1]: 4.23 -> 4.24"]


def test_the_same_values_in_other_bytes_and_a_missing_method_are_differences(tmp_path):
    write(tmp_path / "a", METRICS)
    write(tmp_path / "a", METRICS, loss="hinge")
    (tmp_path / "b" / "results" / "sigmoid").mkdir(parents=True)
    (tmp_path / "b" / "results" / "sigmoid" / "metrics.json").write_text(json.dumps(METRICS))  # no indent
    result = compare(tmp_path / "a", tmp_path / "b")
    assert result.returncode == 1
    assert "results/hinge/metrics.json: missing from" in result.stdout
    assert "the same values, other bytes (formatting)" in result.stdout


def test_a_folder_that_is_no_run_is_one_line_and_exit_2(tmp_path):
    result = compare(tmp_path, tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "pass a pipeline run directory" in result.stderr


def test_within_intervals_takes_another_machines_digits_and_names_a_point_outside(tmp_path):
    write(tmp_path / "a", METRICS)
    nearby = json.loads(json.dumps(METRICS)) | {"kl": 4.2}
    nearby["policy"]["p_positive_mean"] = 0.6
    write(tmp_path / "b", nearby)
    assert compare(tmp_path / "a", tmp_path / "b", "--within-intervals").returncode == 0
    assert compare(tmp_path / "a", tmp_path / "b").returncode == 1  # not the same bytes
    far = json.loads(json.dumps(nearby)) | {"kl": 4.3}
    write(tmp_path / "c", far)
    result = compare(tmp_path / "a", tmp_path / "c", "--within-intervals")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["results/sigmoid/metrics.json: outside",
                                          "  KL 4.3000 outside the reference's 95% interval [3.4500, 4.2300]"]
