"""Stage 3: fine-tune the starting policy on the preference pairs with TRL's `DPOTrainer` (or SLiC-HF), or on the
training prompts with an online RL method of `online_rl` (RLOO, GRPO, online DPO)."""

from __future__ import annotations

import errno
import json
import logging
import math
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .. import files, layout
from ..config import TrainingConfig, config_to_dict
from ..presets import preset_training_defaults
from ..distributed import is_main_process, process_state, wait_for_everyone
from ..errors import Interrupted, PipelineError
from ..locks import exclusive
from ..methods.own_loss import load_own_loss
from ..methods.registry import check_method, is_online, is_own_loss
from ..methods.token_bias import check_reward
from ..library_warnings import CHECKPOINTING_DEPRECATION
from ..models import RECORDED_MODEL_FIX, context_limit, non_finite_parameters
from ..methods.model_card import CARD, model_card, what_trains
from .pairs import PAIR_COLUMNS, check_ids_match_texts, is_finite_number

logger = logging.getLogger(__name__)

def defaults_from_run(values: dict[str, Any]) -> dict[str, Any]:
    """`main.py`'s defaults that depend on the run directory: the training defaults of the preset whose policy
    stage 1 sampled from (none when stage 1 has not run: the stage then says so itself)."""
    record = Path(values.get("run_dir", ".")) / layout.GENERATION_CONFIG
    if not record.exists():
        return {}
    policy = files.read_yaml(record, "python3 text_generation.py").get("policy")
    return preset_training_defaults(policy, values.get("loss", "sigmoid")) if isinstance(policy, str) else {}


def read_pairs(path: Path) -> list[dict[str, Any]]:
    rows = files.read_jsonl(path, PAIR_COLUMNS, "python3 prepare_dataset.py")
    for line_no, row in enumerate(rows, start=1):
        if not all(isinstance(row[k], str) for k in ("prompt", "chosen", "rejected")):
            raise PipelineError(f"{path} line {line_no}: prompt, chosen and rejected must be strings; "
                                "rerun `python3 prepare_dataset.py`")
        # a pair teaches nothing when both sides are the same, or when a side has no token to score
        sides = [row.get(f"{side}_ids", row[side]) for side in ("chosen", "rejected")]
        if row["chosen"] == row["rejected"] or sides[0] == sides[1] or not all(sides):
            problem = "chosen and rejected are the same" if all(sides) else "a side is empty"
            raise PipelineError(f"{path} line {line_no}: {problem}; remove the pair or rerun "
                                "`python3 prepare_dataset.py`")
        for name in ("chosen_reward", "rejected_reward"):  # the soft labels and the token-score fit read them
            if not is_finite_number(row[name]):
                raise PipelineError(f"{path} line {line_no}: {name} must be a finite number, got {row[name]!r}; "
                                    "rerun `python3 prepare_dataset.py`")
        if row["chosen_reward"] < row["rejected_reward"]:  # training would teach the reverse preference
            raise PipelineError(f"{path} line {line_no}: chosen_reward {row['chosen_reward']:g} is below "
                                f"rejected_reward {row['rejected_reward']:g}, so chosen and rejected are swapped; swap "
                                "them back or rerun `python3 prepare_dataset.py`")
    return rows


def pairs_dataset(rows: list[dict[str, Any]], tokenizer, soft_labels: bool = False) -> Any:
    """The pairs as a `datasets.Dataset` of exactly the token sequences that were sampled: `prompt_ids` as
    `models.prompt_ids` gives them to the sampler, `chosen_ids` / `rejected_ids` the sampled completion tokens
    (with EOS only where one was sampled). TRL would append EOS to every completion and re-tokenize prompt +
    completion, training "stop here" after chosen texts cut at --max-new-tokens and merging tokens across the
    boundary. Pairs without ids (written by hand, or by an older version) tokenize each completion on its own.

    `soft_labels`: a `fast_dpo.PREFERENCE` column, sigmoid(chosen_reward - rejected_reward): the Bradley-Terry
    probability under the reward that the chosen text wins.
    """
    from datasets import Dataset

    from ..methods.fast_dpo import PREFERENCE
    from ..models import prompt_ids

    def ids(row: dict[str, Any], side: str) -> list[int]:
        if f"{side}_ids" in row:
            return row[f"{side}_ids"]
        return tokenizer(row[side], add_special_tokens=False)["input_ids"]

    prompt_tokens: dict[str, list[int]] = {}  # a prompt has many pairs: tokenized once
    columns: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []} | (
        {PREFERENCE: []} if soft_labels else {})
    for r in rows:
        if r["prompt"] not in prompt_tokens:
            prompt_tokens[r["prompt"]] = prompt_ids(tokenizer, r["prompt"])
        columns["prompt_ids"].append(prompt_tokens[r["prompt"]])
        columns["chosen_ids"].append(ids(r, "chosen"))
        columns["rejected_ids"].append(ids(r, "rejected"))
        if soft_labels:
            columns[PREFERENCE].append(1 / (1 + math.exp(r["rejected_reward"] - r["chosen_reward"])))
    return Dataset.from_dict(columns)


def check_pair_lengths(dataset, policy, path: Path) -> None:
    """Refuse a pair whose prompt + completion runs past the policy's position embeddings (it would fail deep in
    the embedding with an IndexError)."""
    limit = context_limit(policy.model)
    if limit is None:
        return
    import pyarrow.compute as pc

    def lengths(column: str):  # from the Arrow column itself: no token ids copied out to Python
        return pc.list_value_length(dataset.data.column(column))

    length = pc.add(lengths("prompt_ids"), pc.max_element_wise(lengths("chosen_ids"), lengths("rejected_ids")))
    too_long = pc.indices_nonzero(pc.greater(length, limit))
    if len(too_long):
        first = too_long[0].as_py()
        raise PipelineError(f"{path} line {first + 1}: prompt + completion is {length[first].as_py()} tokens but the "
                            f"policy handles {limit}; shorten or remove the pair, or rerun `python3 "
                            "text_generation.py` with a smaller --max-new-tokens")


def save_trained(trainer, folder: Path) -> None:
    """The trained policy as a plain model folder; LoRA adapters are merged in and a logit bias folded into the LM
    head, so later stages load it as is. safetensors reports a failed write (a full disk) as its own error, not an
    OSError: it is raised as one, naming the folder, so the stage ends in one line like any other disk error."""
    from safetensors import SafetensorError

    try:
        _save_trained(trainer, folder)
    except SafetensorError as err:
        full = "StorageFull" in str(err) or "No space" in str(err)
        raise OSError(errno.ENOSPC if full else errno.EIO, "No space left on device" if full else str(err),
                      str(folder)) from None


def _save_trained(trainer, folder: Path) -> None:
    from peft import PeftModel

    from ..methods.logit_bias import fold_logit_bias

    model = trainer.accelerator.unwrap_model(trainer.model)
    bias = fold_logit_bias(model)
    if bias is not None:
        logger.info("trained logit bias: %d tokens, from %.2f to %.2f (std %.3f)", bias.numel(), bias.min(),
                    bias.max(), bias.std())
    if isinstance(model, PeftModel):
        if is_main_process():
            model.merge_and_unload().save_pretrained(str(folder))
    else:
        trainer.save_model(str(folder))


def complete_checkpoint(folder: Path) -> tuple[int, Path] | None:
    """The step and folder of the latest checkpoint whose save finished (the Trainer writes trainer_state.json
    last), logging any newer one left incomplete by an interruption; None where there is none."""
    steps = sorted((int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*") if p.name[11:].isdigit())
    for step, path in reversed(steps):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("skipping %s: its save did not finish (interrupted)", path)
            continue
        return step, path
    return None


def last_complete_checkpoint(folder: Path) -> Path:
    """The checkpoint a `--resume` run continues from (`complete_checkpoint`), or a one-line error."""
    found = complete_checkpoint(folder)
    if found is not None:
        logger.info("resuming from step %d (%s)", *found)
        return found[1]
    raise PipelineError(f"no complete checkpoint to resume from in {folder}; train without --resume "
                        "(with --save-steps N to make checkpoints)")


def _diverged(loss: str, where: str) -> PipelineError:
    return PipelineError(f"{loss} training diverged ({where}); the previous model is kept: lower --learning-rate "
                         "(e.g. by 10x) or raise --beta")


def finite_guard(loss: str) -> Any:
    """A `TrainerCallback` that stops a training whose logged loss turns NaN or infinite."""
    from transformers import TrainerCallback

    class FiniteGuard(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            value = (logs or {}).get("loss")
            if value is not None and not math.isfinite(value):
                raise _diverged(loss, f"loss {value} at step {state.global_step}")

    return FiniteGuard()


def check_finite_weights(model, loss: str) -> None:
    bad = non_finite_parameters(model)
    if bad:
        raise _diverged(loss, f"non-finite weights in {len(bad)} tensors, e.g. {bad[0]}")


def train_policy(model, tokenizer, dataset, config: TrainingConfig, output_dir: Path, use_cpu: bool,
                 resume: Path | None = None, callbacks: list | None = None, reward=None,
                 max_new_tokens: int | None = None, initial_bias=None, ref_model=None) -> Any:
    """Run `DPOTrainer` (with the fast path of `fast_dpo`; slic too) or an online RL trainer on an
    in-memory model; returns the trainer (model trained in place).

    `dataset` holds pairs, or for the online methods prompts (`online_rl.prompts_dataset`), which also need
    `reward` (an `online_rl.OnlineReward`) and `max_new_tokens`. `output_dir` receives checkpoints when
    `config.save_steps` is set; `resume` is a checkpoint folder to continue from. `initial_bias` is where a trained
    logit bias starts (`token_prior`; None: zero). `ref_model`: the starting policy, where `model` no longer is it
    (a sweep's later rounds); None: the reference is `model` as it is passed in, before any bias or adapter.
    """
    logger.info("training %s: %s", config.loss, what_trains(config_to_dict(config)))
    with warnings.catch_warnings():
        # peft notes that GPT-2's Conv1D layers store weights transposed, and handles them
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
        # raised inside the online trainers' generation about a transformers rename; nothing a user can act on
        warnings.filterwarnings("ignore", message=CHECKPOINTING_DEPRECATION)
        # each method family builds its trainer from the config
        if is_online(config.loss):
            from ..methods import online_rl

            trainer = online_rl.build_trainer(model, tokenizer, dataset, config, output_dir, use_cpu, callbacks,
                                              reward, max_new_tokens)
        elif config.logit_bias:
            from ..methods import token_bias

            trainer = token_bias.build_trainer(model, tokenizer, dataset, config, output_dir, use_cpu, callbacks,
                                               ref_model, initial_bias)
        else:
            from ..methods import pair_methods

            trainer = pair_methods.build_trainer(model, tokenizer, dataset, config, output_dir, use_cpu, callbacks,
                                                 ref_model)
        trainer.add_callback(finite_guard(config.loss))
        with deterministic_kernels():
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    check_finite_weights(model, config.loss)
    return trainer


@contextmanager
def deterministic_kernels() -> Iterator[None]:
    """torch's deterministic kernels for the body: without them two trainings of the embedded policy on the same
    pairs and seed, in two processes, differed by up to 3e-5 in a weight after 12 steps (and the pipeline's KL in
    its 7th digit), so a rerun did not write the same metrics.json. `warn_only`: an op without a deterministic
    kernel (some CUDA ones) warns instead of failing."""
    before, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)


def run(config: TrainingConfig) -> Path:
    """Train on data/pairs.jsonl, save models/LOSS (model, tokenizer, config, training log); return its path."""
    from ..models import load_policy, resolve_device

    check_method(config.loss)
    run_dir = Path(config.run_dir)
    generation = files.read_yaml(run_dir / layout.GENERATION_CONFIG, "python3 text_generation.py")
    online = is_online(config.loss)
    if online:  # the online methods sample from the prompts stage 1 drew its samples for
        from ..methods.online_rl import check_batch, training_prompts

        check_batch(config)
        data_file = layout.GENERATIONS
        rows = training_prompts(files.read_jsonl(run_dir / data_file, ("prompt",), "python3 text_generation.py"))
    else:
        data_file = layout.PAIRS
        rows = read_pairs(run_dir / data_file)  # before loading models: bad input fails fast
    check_reward(config, generation["reward"])
    own = load_own_loss(config.loss) if is_own_loss(config.loss) else None  # its checks too
    device = resolve_device(config.device)
    policy = load_policy(generation["policy"], device, fix=RECORDED_MODEL_FIX)
    reward = prior = None
    if online:
        from ..methods.online_rl import OnlineReward, prompts_dataset

        reward = OnlineReward(_reward(generation, device), generation["batch_size"], policy.tokenizer.bos_token or "")
        dataset = prompts_dataset(rows, policy.tokenizer)
    else:
        check_ids_match_texts(rows, policy.tokenizer, run_dir / data_file,
                              (("chosen_ids", "chosen"), ("rejected_ids", "rejected")), "python3 prepare_dataset.py")
        from ..methods.pair_methods import labels_pairs_softly

        dataset = pairs_dataset(rows, policy.tokenizer, soft_labels=labels_pairs_softly(config))
        check_pair_lengths(dataset, policy, run_dir / data_file)
        from ..methods.token_bias import check_trained_parameters, starts_from_token_scores, token_prior

        check_trained_parameters(policy.model, config)
        if starts_from_token_scores(config):
            prior = token_prior(policy, _reward(generation, device), dataset, rows, generation["batch_size"])
    final = run_dir / layout.model_dir(config.name)
    with exclusive(final, f"python3 main.py {config.loss}"):  # one writer of models/NAME at a time
        _train_and_save(config, policy, dataset, reward, generation, data_file, final, device, prior, own)
    return final


def _reward(generation: dict[str, Any], device) -> Any:
    """Stage 1's reward: a classifier, or a function (`scoring.Scorer`)."""
    from ..models import load_scorer

    return load_scorer(generation["reward"], device, positive_label=generation.get("positive_label"),
                       fix=RECORDED_MODEL_FIX)


def _reference_logps_entry(trainer) -> dict[str, str]:
    """The user-cache entry of the reference log-probs a pair training used (`reference_logps_cache`), for its
    provenance; nothing for a trainer without that pass."""
    from ..embedded.corpus import cache_notation
    from ..methods.reference_logps_cache import entry

    key = getattr(trainer, "reference_logps_key", None)
    return {"reference_logps": cache_notation(str(entry(key)))} if key else {}


def interrupted_training(final: Path, checkpoints: Path, save_steps: int) -> str:
    """What a Ctrl-C during training kept, and how to go on (one line)."""
    found = complete_checkpoint(checkpoints) if save_steps else None
    if found is None:
        return (f"training stopped; {final} is as it was and this training kept nothing (no checkpoint yet"
                f"{'' if save_steps else ': --save-steps is 0'}); rerun the same command to train again "
                "(--save-steps N makes a training resumable)")
    return (f"training stopped; {final} is as it was and the checkpoint of step {found[0]} is kept in "
            f"{checkpoints}; rerun the same command with --resume to continue from it (run_pipeline.py: "
            "`training: {resume: true}` in its --config)")


def _train_and_save(config: TrainingConfig, policy, dataset, reward, generation: dict[str, Any], data_file: Path,
                    final: Path, device, prior=None, own=None) -> None:
    """Train into a staging folder and swap it in for `final` when complete (the caller holds `final`'s lock);
    `prior`: the `bias_start.TokenPrior` the logit bias starts from (None: zero); `own`: the loss file
    (`own_loss.OwnLoss`), whose source the folder keeps."""
    run_dir = Path(config.run_dir)
    # Every process must agree on these folders (all of them call save_model; the main one writes).
    staging = final.with_name(f".{final.name}.staging")
    checkpoints = final.with_name(f".{final.name}.checkpoints")
    online = is_online(config.loss)
    resume = last_complete_checkpoint(checkpoints) if config.resume else None
    if is_main_process():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if not config.resume:
            shutil.rmtree(checkpoints, ignore_errors=True)  # stale checkpoints of an earlier run
    wait_for_everyone()
    try:
        trainer = train_policy(policy.model, policy.tokenizer, dataset, config, checkpoints,
                               use_cpu=device.type == "cpu", resume=resume, reward=reward,
                               max_new_tokens=generation["max_new_tokens"],
                               initial_bias=prior.bias(config.beta) if prior else None)
        save_trained(trainer, staging)
        if is_main_process():
            policy.tokenizer.save_pretrained(str(staging))
            files.write_json(staging / "training_log.json", trainer.state.log_history)
            resolved = config_to_dict(config) | {"provenance": {
                "reference_policy": generation["policy"], "reference_source": policy.source,
                "data": str(data_file), "data_sha256": files.sha256_of(run_dir / data_file),
                ("num_prompts" if online else "num_pairs"): len(dataset),
                "reward_model": generation["reward"], **files.computed_by(),
                "processes": process_state().num_processes,
            } | ({"bias_start": prior.record()} if prior else {}) | _reference_logps_entry(trainer)
                | ({"own_loss": own.record() | {"copy": own.path.name}} if own else {})}
            files.write_yaml(staging / layout.TRAINING_CONFIG, resolved)
            if own is not None:  # the loss that trained it, as it was
                shutil.copyfile(own.path, staging / own.path.name)
            if (checkpoints / "runs").exists():  # tensorboard's event files: kept with the model
                shutil.copytree(checkpoints / "runs", staging / "runs")
            files.write_text_atomic(staging / CARD, model_card(resolved))
            files.replace_dir_atomic(staging, final)
            shutil.rmtree(checkpoints, ignore_errors=True)  # the run finished: nothing left to resume
            logger.info("saved the %s-trained policy to %s", config.name, final)
        wait_for_everyone()
    except KeyboardInterrupt:
        raise Interrupted(interrupted_training(final, checkpoints, config.save_steps)) from None
    finally:
        if is_main_process():
            shutil.rmtree(staging, ignore_errors=True)
            if not config.save_steps:  # no checkpoint to resume from: nothing of this run stays behind
                shutil.rmtree(checkpoints, ignore_errors=True)
