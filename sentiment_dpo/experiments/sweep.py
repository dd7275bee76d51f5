"""A grid of trainings (losses x beta x learning rate x seeds x rounds), each traced by checkpoint evaluations.

Layout under the sweep's run dir:
  data/             stage 1 and 2 outputs (samples of the starting policy, pairs), shared by every cell
  reference/        the starting policy evaluated on the held-out prompts (the curves' first point), and its many
                    samples per prompt that the ceiling (KL-regularised optimum, best-of-n) is estimated from
  cells/NAME/       cell.json (settings, curve, final metrics; written last, so its presence = finished)
                    and samples.jsonl (the final checkpoint's samples)
  report.md + PNGs  written by `sweep_report` from every finished cell

A finished cell is never recomputed (unless its settings changed); an interrupted one is rerun from its start.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import files, layout
from ..config import (BITWISE_HELP, GenerationConfig, MetricsConfig, PairsConfig, TrainingConfig, check_common,
                      check_positive, config_to_dict, default_batch_size, option)
from ..presets import PRESETS
from ..errors import PipelineError
from ..methods.own_loss import check_methods
from ..prompt_source import absolute_source
from ..methods.registry import (BETA_FREE, RECIPES, STANDARD, check_method, check_read_by_some, is_online, is_own_loss,
                                method_name, reads)

logger = logging.getLogger(__name__)

STANDARD_BETA = RECIPES[STANDARD]["beta"]

COMMON = ("run_dir", "seed", "device", "bitwise")
# The stage options set per cell from the grid's lists.
AXES = {"loss": "losses", "beta": "betas", "learning_rate": "learning_rates", "seed": "seeds"}
# Stage options a sweep cannot honour, and why (a sweep config setting one is refused with the reason).
NOT_HONOURED = {
    "max_steps": "each cell trains for --epochs (the online methods for as many steps as one offline round)",
    "save_steps": "an interrupted cell is rerun from its start",
    "resume": "an interrupted cell is rerun from its start",
    "report_to": "cells train in scratch folders; cell.json and report.md are the sweep's record",
    "method_name": "a sweep names each loss file by its function",
}
def _stage_options(cls: type, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
                   as_list: bool = False) -> list[tuple[str, Any, Any]]:
    """`cls`'s options as `make_dataclass` fields with the stage's type, default and help; `as_list`: each takes
    a list of values (a grid axis when it holds several), its default the stage's default alone."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        if as_list:
            out.append((f.name, list[hints[f.name]], dataclasses.field(
                default_factory=lambda value=f.default: [value],
                metadata={"help": f.metadata["help"] + " Several values: one more grid axis."})))
        else:
            out.append((f.name, hints[f.name], dataclasses.field(default=f.default, metadata=f.metadata)))
    return out


# The data (stages 1 and 2) is shared by every cell: one value each; stage 1's batch size is --eval-batch-size.
DATA_OPTIONS = _stage_options(GenerationConfig, skip=(*COMMON, "batch_size")) + _stage_options(PairsConfig,
                                                                                              skip=COMMON)
TRAINING_OPTIONS = _stage_options(TrainingConfig, skip=(*COMMON, *AXES, *NOT_HONOURED), as_list=True)
TRAINING_NAMES = tuple(name for name, _, _ in TRAINING_OPTIONS)
StageOptions = dataclasses.make_dataclass("StageOptions", [
    *DATA_OPTIONS, *TRAINING_OPTIONS, *_stage_options(MetricsConfig, only=("judge", "ceiling_samples"))])


@dataclass
class SweepConfig(StageOptions):
    """Every option of stages 1-4 that a sweep can honour (derived from their configs: the same names, defaults and
    checks) plus the grid and its evaluation."""

    REFUSED = NOT_HONOURED

    run_dir: str = option("Sweep directory: data/, reference/, cells/ and the report.", default="runs/sweep")
    seed: int = option("Seed of the shared data (samples, pairs) and of the evaluation draws.", default=0)
    device: str = option("'auto' (CUDA if available, else CPU), 'cpu' or 'cuda'.", default="auto")
    bitwise: bool = option(BITWISE_HELP, default=False)
    losses: list[str] = option("Methods to compare: DPOTrainer loss types (sft = Preferred-FT, trained once per lr "
                              "and seed: it has no β), 'slic', and the online 'rloo', 'grpo', 'online_dpo' (one "
                              "round each: they sample from the policy at every step).",
                              default_factory=lambda: ["sigmoid", "hinge", "ipo", "slic"])
    betas: list[float] = option("Values of beta (IPO's tau; slic's margin is 1/beta).",
                               default_factory=lambda: [STANDARD_BETA / 2, STANDARD_BETA])
    learning_rates: list[float] = option("Peak learning rates.",
                                         default_factory=lambda: [TrainingConfig.learning_rate])
    seeds: list[int] = option("Training seeds: one independent training per seed (data order, init of nothing "
                             "else: the pairs are shared).", default_factory=lambda: [0, 1, 2])
    rounds: list[int] = option("Rounds of generate -> score -> pair -> train per cell (1 = offline; K > 1 samples "
                              "new pairs from the current policy before each later round).",
                              default_factory=lambda: [1])
    eval_every: int = option("Evaluate every N optimizer steps (and after the last).", default=25)
    eval_prompts: int = option("Held-out prompts per evaluation (one pure sample each).", default=256)
    eval_batch_size: int = option("Sequences per sampling / scoring batch.", default=64)
    kl_budgets: list[float] = option("KL budgets (nats) at which the report compares the losses.",
                                     default_factory=lambda: [3.0, 5.0, 10.0])

    def __post_init__(self) -> None:
        check_common(self)
        for name in ("losses", "betas", "learning_rates", "seeds", "rounds", "kl_budgets", *TRAINING_NAMES):
            if not isinstance(getattr(self, name), list):  # `betas: 0.1` in a YAML file means one value
                setattr(self, name, [getattr(self, name)])
            if not getattr(self, name):
                raise PipelineError(f"--{name.replace('_', '-')} needs at least one value")
        for loss in self.losses:
            check_method(loss)
        check_methods(self.losses, [method_name(loss) for loss in self.losses])
        # each cell gets only the options its method reads: one that no method here reads would do nothing
        check_read_by_some([name for name in TRAINING_NAMES if getattr(self, name) != [None]], self.losses,
                           "the sweep")
        if min(self.betas) <= 0 or min(self.learning_rates) <= 0 or min(self.rounds) < 1:
            raise PipelineError("--betas and --learning-rates must be > 0 and --rounds >= 1")
        check_positive(self, "eval_every", "eval_prompts", "eval_batch_size")
        if min(self.kl_budgets) <= 0:
            raise PipelineError("--kl-budgets needs values > 0")
        # the stages' own checks, and their resolution of the preset (fail now, not after hours of other cells)
        generation = generation_config(self)
        self.policy, self.reward, self.num_samples = generation.policy, generation.reward, generation.num_samples
        pairs_config(self)
        judge = MetricsConfig(judge=self.judge, ceiling_samples=self.ceiling_samples).judge
        self.judge = judge or PRESETS[self.preset]["judge"]
        for cell in grid(self):
            training_config(self, cell)


@dataclass(frozen=True)
class Cell:
    loss: str
    beta: float
    learning_rate: float
    seed: int
    rounds: int
    options: tuple[tuple[str, Any], ...] = ()  # the training options the sweep lists several values of

    @property
    def name(self) -> str:
        base = (f"{method_name(self.loss)}_beta{self.beta:g}_lr{self.learning_rate:g}_seed{self.seed}"
                f"_rounds{self.rounds}")
        return base + "".join(f"_{name}{value:g}" if isinstance(value, float) else f"_{name}{value}"
                              for name, value in self.options)


def label(loss: str, rounds: int, learning_rate: float, several_rates: bool) -> str:
    """A setting's name in the report's tables and plots."""
    text = loss + (f", lr {learning_rate:g}" if several_rates else "")
    return text + (f", {rounds} rounds" if rounds > 1 else "")


def grid(config: SweepConfig) -> list[Cell]:
    """Every cell, in an order that finishes whole settings early: all seeds of one setting first. Online
    methods run one round (they sample from the policy throughout), Preferred-FT one β; a training option a method
    does not read (`methods.reads`) adds no cells for it."""
    varied = [name for name in TRAINING_NAMES if len(getattr(config, name)) > 1]
    combinations = list(itertools.product(*[[(name, value) for value in getattr(config, name)] for name in varied]))
    cells = [Cell(loss, beta, lr, seed, rounds,
                  tuple((name, value) for name, value in combination if reads(loss, name)))
             for rounds in config.rounds for loss in config.losses
             for beta in (config.betas[:1] if loss in BETA_FREE else config.betas)
             for lr in config.learning_rates for combination in combinations for seed in config.seeds
             if rounds == 1 or not is_online(loss)]
    return list(dict.fromkeys(cells))


def cell_settings(config: SweepConfig, cell: Cell) -> dict[str, Any]:
    """Everything that determines a cell's result; a finished cell with other settings is recomputed."""
    ignored = {"run_dir", "device", "losses", "betas", "learning_rates", "seeds", "rounds", "kl_budgets",
               "ceiling_samples", *TRAINING_NAMES}
    if is_online(cell.loss):  # they sample their own pairs (num_pairs still sets their step count)
        ignored |= {"strategy", "margin"}
    shared = {k: v for k, v in config_to_dict(config).items() if k not in ignored}
    training = config_to_dict(training_config(config, cell))
    own = {}
    if is_own_loss(cell.loss):  # its name in the report, and its source: a changed file is another method
        from ..methods.own_loss import load_own_loss

        own = {"method": method_name(cell.loss), "loss_sha256": load_own_loss(cell.loss).sha256}
    return shared | {name: training[name] for name in TRAINING_NAMES if reads(cell.loss, name)} \
        | dataclasses.asdict(cell) | own


def generation_config(config: SweepConfig) -> GenerationConfig:
    options = {name: getattr(config, name) for name in _names(GenerationConfig, DATA_OPTIONS)}
    return GenerationConfig(run_dir=config.run_dir, seed=config.seed, device=config.device, bitwise=config.bitwise,
                            batch_size=config.eval_batch_size,
                            **options | {"prompts": absolute_source(options.get("prompts"))})


def pairs_config(config: SweepConfig) -> PairsConfig:
    return PairsConfig(run_dir=config.run_dir, seed=config.seed, bitwise=config.bitwise,
                       **{name: getattr(config, name) for name in _names(PairsConfig, DATA_OPTIONS)})


def _names(cls: type, options: list[tuple[str, Any, Any]]) -> list[str]:
    fields = {f.name for f in dataclasses.fields(cls)}
    return [name for name, _, _ in options if name in fields]


def pairs_per_round(config: SweepConfig) -> int:
    """--num-pairs, or for 0 (every pair) the number of same-prompt pairs, prompts × k(k − 1)/2 for k samples per
    prompt (a tie or a repeated text pairs with nothing, so the built data may hold a few fewer)."""
    from ..prompts import prompts_needed

    k = config.samples_per_prompt
    return config.num_pairs or prompts_needed(config.num_samples, k) * k * (k - 1) // 2


def offline_steps(num_pairs: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps of one offline round: the online methods train for as many."""
    return math.ceil(num_pairs / batch_size) * math.ceil(epochs)


def training_config(config: SweepConfig, cell: Cell) -> TrainingConfig:
    """The cell's stage-3 config: the sweep's value of each training option (the cell's own where the sweep lists
    several; the stage default for an option its method does not read)."""
    from ..methods.online_rl import check_batch
    from ..methods.token_bias import check_reward

    values = {name: getattr(config, name)[0] for name in TRAINING_NAMES if reads(cell.loss, name)} \
        | dict(cell.options)
    # the online methods train as many steps as the offline ones (at the offline batch size when it is unset)
    offline_batch = values["batch_size"] or default_batch_size(online=False)
    steps = offline_steps(pairs_per_round(config), offline_batch, values["epochs"])
    training = TrainingConfig(run_dir=config.run_dir, seed=cell.seed, device=config.device, bitwise=config.bitwise,
                              loss=cell.loss,
                              beta=cell.beta if reads(cell.loss, "beta") else None, learning_rate=cell.learning_rate,
                              max_steps=steps if is_online(cell.loss) else -1, **values)
    check_batch(training)
    check_reward(training, config.reward)
    return training


def is_finished(path: Path, settings: dict[str, Any]) -> bool:
    """Whether the cell in `path` finished with exactly these settings (an unreadable cell.json: no)."""
    file = path / layout.CELL_RECORD
    if not file.exists():
        return False
    try:
        stored = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return stored.get("settings") == json.loads(json.dumps(settings))


class SweepRunner:
    """Holds what every cell shares (models, prompts, pairs, the evaluator) and runs cells."""

    def __init__(self, config: SweepConfig):
        from ..evaluation.evaluator import EvalSettings, Evaluator
        from ..models import load_policy, load_scorer, resolve_device
        from ..prompts import check_unchanged, choose_prompts, prompts_needed
        from ..stages.generate import policy_prompt_pools
        from ..stages.train import read_pairs

        self.config = config
        self.run_dir = Path(config.run_dir)
        self.device = resolve_device(config.device)
        self.reference = load_policy(config.policy, self.device)
        self.reward = load_scorer(config.reward, self.device, positive_label=config.positive_label)
        judge = None if config.judge == "none" else load_scorer(config.judge, self.device, kind="judge")
        self.pairs = read_pairs(self.run_dir / layout.PAIRS)
        self._token_prior = None  # fitted when a cell first starts a logit bias from it
        generation = config_to_dict(generation_config(config))
        # the prompts stage 1 drew the shared pairs from, and held-out ones for every evaluation
        pools = policy_prompt_pools(generation, self.reference, config.max_new_tokens)
        check_unchanged(files.read_yaml(self.run_dir / layout.GENERATION_CONFIG, "python3 sweep.py"), pools,
                        "python3 sweep.py")
        self.train_prompts = choose_prompts(pools, "train",
                                            prompts_needed(config.num_samples, config.samples_per_prompt), config.seed)
        heldout = choose_prompts(pools, "heldout", config.eval_prompts, config.seed)
        self.evaluator = Evaluator(self.reference, self.reward, judge, EvalSettings(
            heldout, 1, config.max_new_tokens, config.eval_batch_size, config.seed))
        self.reference_metrics = self._reference_point()
        if config.ceiling_samples:
            from ..evaluation.ceiling_samples import load_or_sample

            load_or_sample(self.run_dir / layout.SWEEP_REFERENCE, self.evaluator, config.ceiling_samples)

    def _initial_bias(self, policy, training: TrainingConfig, dataset) -> Any:
        """Where the cell's logit bias starts (None: zero, or no bias); the token prior is fitted once per sweep, on
        the shared pairs (`dataset`: their token ids)."""
        from ..methods.token_bias import check_trained_parameters, starts_from_token_scores, token_prior

        check_trained_parameters(policy.model, training)
        if not starts_from_token_scores(training):
            return None
        if self._token_prior is None:
            self._token_prior = token_prior(policy, self.reward, dataset, self.pairs, self.config.eval_batch_size)
        return self._token_prior.bias(training.beta)

    def _reference_point(self) -> dict[str, float]:
        folder = self.run_dir / layout.SWEEP_REFERENCE
        if (folder / layout.METRICS).exists():  # a resumed sweep: the same prompts and seed give the same point
            self.evaluator.reference_rewards_from(
                files.read_jsonl(folder / layout.SAMPLES, ("prompt_index", "reward"), "python3 sweep.py"))
            return json.loads((folder / layout.METRICS).read_text())
        metrics, rows = self.evaluator.evaluate_reference()
        files.write_jsonl(folder / layout.SAMPLES, rows)
        files.write_json(folder / layout.METRICS, metrics)
        return metrics

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        from .checkpoint_eval import CurveCallback
        from ..models import load_policy
        from ..stages.train import train_policy

        config = self.config
        training = training_config(config, cell)
        policy = load_policy(config.policy, self.device)  # a fresh copy of the starting policy
        curve = [{"round": 0, "step": 0, **self.reference_metrics}]
        final_rows: list[dict[str, Any]] = []
        steps_before = 0
        start = time.time()
        for round_index in range(1, cell.rounds + 1):
            online = is_online(cell.loss)

            def on_checkpoint(model, step: int, round_index: int = round_index, offset: int = steps_before) -> None:
                nonlocal final_rows
                metrics, final_rows = self.evaluator.evaluate(model, policy.tokenizer)
                curve.append({"round": round_index, "step": offset + step, **metrics})
                logger.info("%s round %d step %d: reward %.2f, KL %.2f", cell.name, round_index,
                            offset + step, metrics["reward_mean"], metrics["kl"])

            dataset, reward = self._round_data(policy, training, cell, round_index)
            # a later round's bias starts from zero on top of the policy reached (its weights hold the earlier bias),
            # and its DPO reference is still the starting policy, loaded afresh
            initial_bias = self._initial_bias(policy, training, dataset) if round_index == 1 and not online else None
            ref_model = load_policy(config.policy, self.device).model if round_index > 1 and not online else None
            with tempfile.TemporaryDirectory() as scratch:
                trainer = train_policy(policy.model, policy.tokenizer, dataset, training,
                                       Path(scratch), use_cpu=self.device.type == "cpu",
                                       callbacks=[CurveCallback(on_checkpoint, config.eval_every)], reward=reward,
                                       max_new_tokens=config.max_new_tokens, initial_bias=initial_bias,
                                       ref_model=ref_model)
            steps_before += trainer.state.global_step
        return self._write_cell(cell, training, curve, final_rows, time.time() - start)

    def _round_data(self, policy, training: TrainingConfig, cell: Cell, round_index: int):
        """(dataset, reward callable) a round trains on: the training prompts and the reward for an online method;
        else pairs, the shared ones in round 1 and, in a later round, new pairs from the current policy's own
        samples on the training prompts."""
        from ..methods.online_rl import OnlineReward, prompts_dataset
        from ..stages.generate import sample_and_score
        from ..stages.pairs import build_pairs
        from ..stages.train import pairs_dataset

        config = self.config
        if is_online(cell.loss):
            return (prompts_dataset(self.train_prompts, policy.tokenizer),
                    OnlineReward(self.reward, config.eval_batch_size, policy.tokenizer.bos_token or ""))
        pairs = self.pairs
        if round_index > 1:
            policy.model.eval()
            rows = sample_and_score(policy, self.reward, self.train_prompts, config.samples_per_prompt,
                                    config.max_new_tokens, config.temperature, config.eval_batch_size,
                                    seed=cell.seed * 1000 + round_index, desc=f"round {round_index} samples")
            pairs = build_pairs(rows[: config.num_samples], config.num_pairs, config.strategy,
                                config.margin, seed=cell.seed * 1000 + round_index)
        from ..methods.pair_methods import labels_pairs_softly

        return pairs_dataset(pairs, policy.tokenizer, soft_labels=labels_pairs_softly(training)), None

    def _write_cell(self, cell: Cell, training: TrainingConfig, curve: list[dict[str, Any]],
                    final_rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """The cell's final samples, then its record (last: its presence marks the cell finished)."""
        from ..methods.model_card import trained_parameters

        config = self.config
        folder = self.run_dir / layout.SWEEP_CELLS / cell.name
        files.write_jsonl(folder / layout.SAMPLES, final_rows)
        result = {"settings": cell_settings(config, cell), "curve": curve, "final": curve[-1], "seconds": seconds,
                  "provenance": {"policy": config.policy, "reward_model": config.reward,
                                 "trained_parameters": trained_parameters(config_to_dict(training)),
                                 "pairs_sha256": files.sha256_of(self.run_dir / layout.PAIRS),
                                 **files.computed_by()}}
        files.write_json(folder / layout.CELL_RECORD, result)
        return result


def _data_settings(data: Any) -> Any:
    """The recorded stage configs without their run_dir: a sweep directory that was moved keeps its data.
    Anything else (a hand-edited file) is returned as it is, to be refused as other settings."""
    if not isinstance(data, dict) or not all(isinstance(settings, dict) for settings in data.values()):
        return data
    return {stage: {k: v for k, v in settings.items() if k != "run_dir"} for stage, settings in data.items()}


def prepare_data(config: SweepConfig) -> None:
    """Stages 1 and 2 into the sweep dir, once; a sweep dir holding data from other settings is refused.
    Records the data settings and this invocation's resolved config in sweep.config.yaml."""
    from ..stages import pairs, generate

    run_dir = Path(config.run_dir)
    wanted = {"generation": config_to_dict(generation_config(config)), "pairs": config_to_dict(pairs_config(config))}
    stored_file = run_dir / layout.SWEEP_CONFIG
    if (run_dir / layout.PAIRS).exists() and stored_file.exists():
        stored = files.read_yaml(stored_file, "python3 sweep.py")
        if _data_settings(stored.get("data")) != _data_settings(wanted):
            raise PipelineError(f"{run_dir} holds data made with other generation / pair settings; use a new "
                                "--run-dir, or the settings it was made with (see its sweep.config.yaml)")
    else:
        generate.run(generation_config(config))
        pairs.run(pairs_config(config))
    files.write_yaml(stored_file, {"data": wanted, "sweep": config_to_dict(config),
                                "provenance": {**files.computed_by()}})


def run(config: SweepConfig) -> None:
    """Run every unfinished cell of the grid (the report is `sweep_report.write_report`'s)."""
    prepare_data(config)
    runner = SweepRunner(config)
    cells = grid(config)
    start = time.time()
    for number, cell in enumerate(cells, start=1):
        folder = Path(config.run_dir) / layout.SWEEP_CELLS / cell.name
        if is_finished(folder, cell_settings(config, cell)):
            logger.info("[%d/%d] %s: finished earlier, kept", number, len(cells), cell.name)
            continue
        logger.info("[%d/%d] %s: training", number, len(cells), cell.name)
        result = runner.run_cell(cell)
        logger.info("[%d/%d] %s: done in %.0f s (reward %.2f, KL %.2f)", number, len(cells), cell.name,
                    result["seconds"], result["final"]["reward_mean"], result["final"]["kl"])
    logger.info("sweep of %d cells took %.0f s in this invocation", len(cells), time.time() - start)
