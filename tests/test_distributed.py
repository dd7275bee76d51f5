"""Two CPU processes (torchrun, gloo) on tiny models: the same rows as one process, one model written."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sentiment_dpo import commands, layout
from conftest import ROOT
from sentiment_dpo import files

GEN_ARGS = ["--num-samples", "24", "--samples-per-prompt", "4", "--max-new-tokens", "6", "--batch-size", "4"]


def torchrun(script: str | Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / script), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env=os.environ | {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_policy, tiny_reward):
    single, multi = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("multi")
    models = ["--policy", str(tiny_policy), "--reward", str(tiny_reward)]
    assert commands.generate(["--run-dir", str(single), *models, *GEN_ARGS]) == 0
    torchrun("text_generation.py", "--run-dir", str(multi), *models, *GEN_ARGS)
    return single, multi


def test_two_processes_write_the_same_rows_as_one(runs):
    single, multi = runs
    assert (multi / layout.GENERATIONS).read_text() == (single / layout.GENERATIONS).read_text()


def test_two_processes_train_and_write_one_model(runs):
    _, multi = runs
    assert commands.pairs(["--run-dir", str(multi), "--num-pairs", "16", "--strategy", "random"]) == 0
    result = torchrun("main.py", "hinge", "--run-dir", str(multi), "--max-steps", "2", "--batch-size", "2")
    assert result.stderr.count("saved the hinge-trained policy") == 1  # logged once, by the main process
    models = sorted(p.name for p in (multi / "models").iterdir())
    assert models == ["hinge"]  # no staging folder left behind
    config = files.read_yaml(multi / "models" / "hinge" / "training.config.yaml", "")
    assert config["provenance"]["processes"] == 2


def test_two_processes_train_the_same_model_as_one_with_the_same_global_batch(runs, tmp_path):
    """2 processes x 2 pairs per step = 1 process x 4 pairs: the same pairs in each step, averaged gradients,
    so the same weights (here the default: the logit bias, folded into the LM head)."""
    import shutil

    from safetensors.torch import load_file

    _, multi = runs
    if not (multi / layout.PAIRS).exists():
        assert commands.pairs(["--run-dir", str(multi), "--num-pairs", "16", "--strategy", "random"]) == 0
    single = tmp_path / "single"
    shutil.copytree(multi / "data", single / "data")
    args = ["--max-steps", "3", "--warmup-ratio", "0", "--learning-rate", "1e-3"]  # every weight moves ~3e-3
    torchrun("main.py", "sigmoid", "--run-dir", str(multi), "--batch-size", "2", *args)
    assert commands.train(["sigmoid", "--run-dir", str(single), "--batch-size", "4", *args]) == 0
    # the same run with another data order (seed): what a real difference looks like
    other = tmp_path / "other"
    shutil.copytree(multi / "data", other / "data")
    assert commands.train(["sigmoid", "--run-dir", str(other), "--batch-size", "4", "--seed", "1", *args]) == 0

    def weights(run_dir: Path) -> dict:
        return load_file(run_dir / "models" / "sigmoid" / "model.safetensors")

    def largest_difference(a: dict, b: dict) -> float:
        return max((a[name] - b[name]).abs().max().item() for name in a)

    def head(weights: dict):  # the starting policy's head is tied to its input embeddings
        return weights.get("lm_head.weight", weights["transformer.wte.weight"])

    start = load_file(Path(files.read_yaml(single / layout.GENERATION_CONFIG, "")["policy"]) / "model.safetensors")
    one, two = weights(single), weights(multi)
    update = (head(one) - head(start)).abs().max().item()
    assert update > 1e-3  # training moved the weights
    # rounding differences in the summed gradients, amplified a little by Adam, stay far below an update
    assert largest_difference(one, two) < 0.01 * update
    assert largest_difference(one, weights(other)) > 0.1 * update


def test_shutdown_stops_the_process_group_threads_after_a_model_was_loaded(tmp_path, tiny_policy):
    # Gloo threads still running at interpreter exit abort a process now and then, failing a finished run.
    # Loading a model used to pin the process group (see distributed.process_state), so this checks the threads.
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from sentiment_dpo import distributed
        from transformers import AutoModelForCausalLM
        assert distributed.process_state().num_processes == 2
        AutoModelForCausalLM.from_pretrained({str(tiny_policy)!r})
        distributed.map_batches([0, 1], lambda i, batch: batch)
        distributed.shutdown()
        names = [open(f"/proc/self/task/{{t}}/comm").read().strip() for t in os.listdir("/proc/self/task")]
        with open(os.path.join({str(tmp_path)!r}, "threads." + os.environ["RANK"]), "w") as out:
            out.write(" ".join(names))
    """))
    torchrun(script)
    for rank in (0, 1):
        threads = (tmp_path / f"threads.{rank}").read_text().split()
        assert threads and not [name for name in threads if "gloo" in name]


def test_two_nodes_write_the_same_rows_as_one_process(runs, tmp_path, tiny_policy, tiny_reward):
    """`torchrun --nnodes 2 --nproc_per_node 1` twice on this machine, meeting at a local c10d rendezvous."""
    import socket

    single, _ = runs
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_dir = tmp_path / "nodes"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "nodes-test",
           str(ROOT / "text_generation.py"), "--run-dir", str(run_dir), "--policy", str(tiny_policy), "--reward",
           str(tiny_reward), *GEN_ARGS]
    env = os.environ | {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in results]
    assert (run_dir / layout.GENERATIONS).read_text() == (single / layout.GENERATIONS).read_text()
