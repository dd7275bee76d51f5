"""The limit studies' two scripts, end to end on a tiny run directory (the product's suite does not run study code:
`python3 -m pytest studies/ceiling_limits`)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the product suite's tiny models and fake corpus

from tiny import build_tiny_policy, build_tiny_reward, write_fake_corpus  # noqa: E402

from sentiment_dpo import commands, files  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    write_fake_corpus(root / "cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SENTIMENT_DPO_CACHE", str(root / "cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        policy, reward = build_tiny_policy(root / "policy"), build_tiny_reward(root / "reward")
        run = root / "run"
        assert commands.generate(["--run-dir", str(run), "--policy", str(policy), "--reward", str(reward),
                                  "--num-samples", "24", "--samples-per-prompt", "4", "--max-new-tokens", "6",
                                  "--batch-size", "8"]) == 0
        assert commands.pairs(["--run-dir", str(run), "--num-pairs", "16", "--strategy", "random"]) == 0
        assert commands.train(["sigmoid", "--run-dir", str(run), "--max-steps", "1", "--batch-size", "4"]) == 0
        assert commands.evaluate(["sigmoid", "--run-dir", str(run), "--num-prompts", "6", "--batch-size", "8",
                                  "--ceiling-samples", "4", "--judge", "none"]) == 0
        yield run


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / name), *args], capture_output=True, text=True, timeout=120)


def test_the_bag_of_tokens_limit_fits_the_run_samples(run_dir):
    limit = script("bag_of_tokens_limit.py", str(run_dir))
    assert limit.returncode == 0, limit.stderr
    last = limit.stdout.strip().splitlines()[-1].split()
    assert last[0] == "24" and -1 <= float(last[1]) <= 1 and -1 <= float(last[2]) <= 1


def test_the_network_limit_redraws_the_heldout_prompts_and_refuses_other_ones(run_dir, tmp_path):
    limit = script("network_reward_limit.py", str(run_dir), "--start", "12", "--epochs", "1")
    assert limit.returncode == 0, limit.stderr
    sizes = [line.split()[0] for line in limit.stdout.strip().splitlines()[2:]]
    assert sizes == ["12", "24"] and -1 <= float(limit.stdout.strip().splitlines()[-1].split()[2]) <= 1
    other = tmp_path / "other_ceiling"  # samples drawn for other prompts: refused, not scored against the wrong ones
    other.mkdir()
    shutil.copy(run_dir / "results" / "reference" / "ceiling_samples.jsonl", other)
    record = files.read_yaml(run_dir / "results" / "reference" / "ceiling_samples.config.yaml", "")
    files.write_yaml(other / "ceiling_samples.config.yaml", record | {"prompts_sha256": "0" * 64})
    refused = script("network_reward_limit.py", str(run_dir), "--held-out", str(other / "ceiling_samples.jsonl"))
    assert refused.returncode == 2 and "drawn for other prompts" in refused.stderr


def test_the_bag_of_tokens_limit_without_ceiling_samples_is_refused(tmp_path):
    result = script("bag_of_tokens_limit.py", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {tmp_path} has no ceiling samples; run `python3 calculate_metrics.py "
                                     f"sigmoid --run-dir {tmp_path}` first, or pass --held-out FILE")
