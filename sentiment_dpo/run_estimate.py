"""The up-front estimate of a pipeline run: its time and peak memory on this machine, from per-unit costs measured
for the preset's models (`unit_costs.json`, written by benchmarks/unit_costs.py), and a warning that names the
setting to change where the estimated memory exceeds the machine's.

Units (seconds on the measuring machine, scaled by this machine's matrix-multiply speed against its): stage 1 per
sample (sampling `max_new_tokens` tokens and scoring; linear in the tokens), a text's forward pass in training (the
reference pass costs one, a training step three per distinct text of the step, LoRA a measured share of that),
stage 4 per held-out sample, the ceiling per reference sample, and each stage's fixed part (loading, saving).
Training memory is a base (weights, gradients, optimizer state) plus a measured amount per text of a micro-batch.
The estimate assumes an empty cache: stage-1 rows, a ceiling or reference log-probs already cached shorten it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import GenerationConfig, MetricsConfig, PairsConfig, TrainingConfig
from .methods.registry import is_online, reads
from .models import resolve_device

logger = logging.getLogger(__name__)

UNIT_COSTS_FILE = Path(__file__).with_name("unit_costs.json")
MEASURED_TOKENS = 32  # the max_new_tokens the per-sample figures were measured at
MEMORY_HEADROOM = 0.9  # of the machine's memory a run can count on (the system and other processes take the rest)


def machine_speed(seconds: float = 0.3) -> float:
    """GFLOP/s of a 512 x 512 fp32 matrix product on torch's threads: how much faster or slower this machine is
    than the one that measured the per-unit costs."""
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    torch.mm(a, b)  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * 512**3 * runs / (time.perf_counter() - start) / 1e9


def measured_entry(policy: str, a: dict, b: dict, c: dict, small: dict, lora: dict, speed: float) -> dict[str, Any]:
    """Per-unit costs from the timings of benchmarks/unit_costs.py's runs (its docstring says what each holds)."""
    from .files import machine_description

    def s(run: dict, stage: str) -> float:
        return run["seconds"][stage]

    def gib(run: dict, stage: str) -> float:
        return run["peak_memory_gib"][stage]

    generate, train, evaluate = "text_generation", "main sigmoid", "calculate_metrics sigmoid"
    per_sample = (s(b, generate) - s(a, generate)) / 128
    forward = (s(b, train) - s(a, train)) / (128 * 4)  # one more step of 128 texts (3f each), 128 reference texts
    train_fixed = s(a, train) - 128 * 4 * forward
    ceiling = (s(c, evaluate) - s(a, evaluate)) / 256
    per_prompt = (s(b, evaluate) - s(a, evaluate) - 256 * ceiling) / 32
    per_text_gib = (gib(a, train) - small["gib"]) / (128 - 32)
    return {
        "machine": machine_description()["cpu"], "machine_gflops": round(speed, 1),
        "policy": policy,
        "generate_fixed_s": s(a, generate) - 128 * per_sample, "generate_per_sample_s": per_sample,
        "pairs_s": s(a, "prepare_dataset"),
        "train_fixed_s": train_fixed, "forward_per_text_s": forward,
        "lora_step_share": (lora["seconds"] - train_fixed - 128 * forward) / (128 * 3 * forward),
        "evaluate_fixed_s": s(a, evaluate) - 32 * per_prompt - 256 * ceiling, "evaluate_per_prompt_s": per_prompt,
        "ceiling_per_sample_s": ceiling,
        "generate_gib": gib(a, generate), "evaluate_gib": max(gib(a, evaluate), gib(c, evaluate)),
        "train_base_gib": gib(a, train) - 128 * per_text_gib, "train_per_text_gib": per_text_gib,
        "lora_base_gib": lora["gib"] - 128 * per_text_gib,
    }


@dataclass
class Training:
    """One method's training in the estimate: its peak memory at each gradient-accumulation split."""
    config: TrainingConfig
    texts_per_step: int  # distinct texts of one optimizer step
    base_gib: float  # weights, gradients and optimizer state
    per_text_gib: float  # activations and logits of one text of a micro-batch

    def texts_per_micro_batch(self, accumulation: int | None = None) -> int:
        return math.ceil(self.texts_per_step / (accumulation or self.config.gradient_accumulation_steps or 1))

    def gib(self, accumulation: int | None = None) -> float:
        return self.base_gib + self.per_text_gib * self.texts_per_micro_batch(accumulation)


@dataclass
class Estimate:
    seconds: dict[str, float]  # per stage, as timings.json names them
    stage_gib: float  # the peak of sampling, scoring and evaluating
    trainings: dict[str, Training]
    machine_gib: float
    preset: str

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def peak_gib(self) -> float:
        return max([self.stage_gib, *(t.gib() for t in self.trainings.values())])

    def line(self) -> str:
        stages = ", ".join(f"{name} {_duration(seconds)}" for name, seconds in self.seconds.items())
        return (f"estimate for this run on this machine, from the {self.preset} preset's measured per-unit costs and "
                f"an empty cache: about {_duration(self.total_seconds)} ({stages}), peak memory about "
                f"{self.peak_gib:.1f} of {self.machine_gib:.0f} GiB")

    def memory_warnings(self) -> list[str]:
        """One line per training whose estimated peak exceeds what the machine can give, naming what to change:
        the gradient-accumulation split that fits, else LoRA or a smaller batch."""
        limit = MEMORY_HEADROOM * self.machine_gib
        lines = []
        for name, training in self.trainings.items():
            if training.gib() <= limit:
                continue
            batch = training.config.batch_size
            fits = next((n for n in range(1, batch + 1) if batch % n == 0 and training.gib(n) <= limit), None)
            fix = (f"set gradient_accumulation_steps: {fits} (--gradient-accumulation-steps {fits}: the same "
                   "optimisation in micro-batches)" if fits else "train LoRA adapters (--lora-rank 16) or lower "
                   "--batch-size")
            lines.append(f"training {name} needs about {training.gib():.1f} GiB ({training.texts_per_micro_batch()} "
                         f"texts per micro-batch at --batch-size {batch}) and this machine has "
                         f"{self.machine_gib:.0f} GiB: {fix}")
        return lines


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def unit_costs(preset: str) -> dict[str, Any] | None:
    if not UNIT_COSTS_FILE.exists():
        return None
    return json.loads(UNIT_COSTS_FILE.read_text()).get(preset)


def pairs_count(generation: GenerationConfig, pairs: PairsConfig) -> tuple[int, int]:
    """(pairs, prompts) of stage 2 for stage 1's settings: every same-prompt pair unless --num-pairs caps them."""
    prompts = math.ceil(generation.num_samples / generation.samples_per_prompt)
    k = generation.samples_per_prompt
    available = prompts if pairs.strategy == "best_worst" else prompts * k * (k - 1) // 2
    return min(pairs.num_pairs or available, available), prompts


def texts_per_step(training: TrainingConfig, num_pairs: int, prompts: int, samples_per_prompt: int) -> int:
    """Distinct texts in one optimizer step: grouped by prompt, whole prompts' pairs share their samples."""
    batch = min(training.batch_size, num_pairs)
    if not training.group_by_prompt:
        return 2 * batch
    pairs_per_prompt = num_pairs / prompts
    return min(2 * batch, math.ceil(batch / pairs_per_prompt) * samples_per_prompt)


def estimate(generation: GenerationConfig, pairs: PairsConfig, trainings: dict[str, TrainingConfig],
             metrics: dict[str, MetricsConfig]) -> Estimate | None:
    """The run's time per stage and peak memory, or None where no per-unit costs were measured for its models
    (another policy than the preset's, an online method, a GPU)."""
    import psutil

    costs = unit_costs(generation.preset)
    if (costs is None or costs["policy"] != generation.policy or resolve_device(generation.device).type != "cpu"
            or any(is_online(t.loss) or t.logit_bias for t in trainings.values())):
        return None
    scale = costs["machine_gflops"] / machine_speed()
    tokens = generation.max_new_tokens / MEASURED_TOKENS
    seconds = {"text_generation": costs["generate_fixed_s"]
               + costs["generate_per_sample_s"] * generation.num_samples * tokens,
               "prepare_dataset": costs["pairs_s"]}
    num_pairs, prompts = pairs_count(generation, pairs)
    distinct = min(generation.num_samples, 2 * num_pairs)
    planned = {}
    for index, (name, training) in enumerate(trainings.items()):
        step_texts = texts_per_step(training, num_pairs, prompts, generation.samples_per_prompt)
        steps = (training.max_steps if training.max_steps > 0
                 else math.ceil(math.ceil(num_pairs / training.batch_size) * training.epochs))  # as the Trainer
        step_cost = 3 * (costs["lora_step_share"] if training.lora_rank else 1.0)
        # the reference's forward pass: once per distinct text, or every step (slic has none)
        reference = (distinct if training.precompute_ref_log_probs else
                     steps * step_texts if reads(training.loss, "precompute_ref_log_probs") else 0)
        seconds[f"main {name}"] = costs["train_fixed_s"] + costs["forward_per_text_s"] * tokens * (
            reference + steps * step_texts * step_cost)
        m = metrics[name]
        evaluate = costs["evaluate_fixed_s"] + costs["evaluate_per_prompt_s"] * m.num_prompts * m.samples_per_prompt
        if index == 0:  # the ceiling is drawn once; later methods are served it
            evaluate += costs["ceiling_per_sample_s"] * m.num_prompts * m.ceiling_samples
        seconds[f"calculate_metrics {name}"] = evaluate * tokens
        planned[name] = Training(training, step_texts, costs["lora_base_gib" if training.lora_rank else
                                                             "train_base_gib"], costs["train_per_text_gib"] * tokens)
    return Estimate({k: v * scale for k, v in seconds.items()}, max(costs["generate_gib"], costs["evaluate_gib"]),
                    planned, psutil.virtual_memory().total / 2**30, generation.preset)
