"""Stage configurations: one dataclass per stage, each field with its `help`, checked in `__post_init__` (values
only: the file system is the stages' business). `config_parser.py` builds the command line and reads YAML files
from them. This module imports nothing heavy, so `--help` is instant.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import PipelineError
from .user_code import function_spec_parts, is_function_spec
from .presets import PRESETS
from .prompt_source import DEFAULT_COLUMN, DEFAULT_HELDOUT_FRACTION, KINDS_HELP
from .prompts import CORPUS_PROMPT_WORDS
from .methods.registry import (EXO_DEFAULT_LABEL_SMOOTHING, LABEL_SMOOTHING_LOSSES, ONLINE_BETA, READ_BY, RECIPES,
                               STANDARD, TOKEN_BIAS, TRL_VERSION, check_method, check_reads, is_own_loss, method_name,
                               reads, recipe_defaults, trains_on_pairs)

# Stage 1's options that choose the prompts, also on run_pipeline.py's command line: the source is named once.
PROMPT_OPTIONS = ("prompts", "prompt_column", "prompt_words", "prompt_tokens", "heldout_split", "heldout_fraction")
DEFAULT_NUM_SAMPLES = 8000
PAIR_STRATEGIES = ("margin", "random", "best_worst")
DEFAULT_MARGIN = 0.5
PROMPT_MODES = ("review", "bos")
REPORT_TO = ("none", "tensorboard", "wandb")
BIAS_STARTS = ("reward", "zero")


def option(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


DEVICES = ("auto", "cpu", "cuda")
BITWISE_HELP = ("Compute with the AVX2 kernels and vendor-neutral matrix products, so that any x86 machine writes "
                "the same bytes (slower; docs/stages.md). Default: the CPU's own kernels.")


@dataclass
class CommonConfig:
    run_dir: str = option("Run directory holding data/, models/ and results/.", default=".")
    seed: int = option("Random seed for everything this stage samples.", default=0)
    device: str = option("'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N'.", default="auto")
    bitwise: bool = option(BITWISE_HELP, default=False)

    def __post_init__(self) -> None:
        check_common(self)


# numpy's generators (the Trainer seeds them) take seeds below 2**32; every stage accepts the same range.
MAX_SEED = 2**32 - 1


def check_common(config: Any) -> None:
    """The checks every stage config shares (each subclass's `__post_init__` calls it)."""
    check_non_negative(config, "seed")
    if config.seed > MAX_SEED:
        raise PipelineError(f"--seed must be at most {MAX_SEED} (numpy's limit), got {config.seed}; e.g. --seed 0")
    if config.device not in DEVICES and not (config.device.startswith("cuda:") and config.device[5:].isdigit()):
        raise PipelineError(f"--device {config.device!r} is not one of: {', '.join(DEVICES)} (or cuda:N)")


@dataclass
class GenerationConfig(CommonConfig):
    preset: str = option(f"Model pair to use unless --policy/--reward say otherwise: {', '.join(PRESETS)}.",
                        default="embedded")
    policy: str | None = option("Starting policy: a local folder, a hub id, 'embedded' or 'smollm2'. "
                               "Default: the preset's.",
                               default=None)
    reward: str | None = option("Sentiment classifier (a local folder, a hub id, or 'embedded') or your own reward "
                               "function, FILE.py:FUNCTION, texts -> one float each (docs/methods.md#your-own-reward). "
                               "Default: the preset's.", default=None)
    positive_label: str | None = option(
        "Name of the positive class in the classifier's id2label (found automatically if unset).", default=None)
    num_samples: int | None = option(f"Number of texts to sample. Default: {DEFAULT_NUM_SAMPLES} (the reference "
                                     f"preset: {PRESETS['reference']['num_samples']}, sized for a CPU: "
                                     "docs/original_experiment.md).", default=None)
    samples_per_prompt: int = option("Samples drawn for each prompt (same-prompt pairs need at least 2).", default=8)
    prompt_mode: str = option("'review': prompts are made from texts (--prompts, by default the openings of the "
                             "built-in review sentences); 'bos': unconditional generation from the BOS token alone.",
                             default="review")
    prompts: str | None = option(f"Prompt source: {KINDS_HELP} (docs/prompts.md). Default: the built-in Pang & Lee "
                                 "reviews (the reference preset: stanfordnlp/imdb).", default=None)
    prompt_column: str | None = option(f"The column of a --prompts table or dataset holding the texts. Default: "
                                       f"{DEFAULT_COLUMN}.", default=None)
    prompt_words: int | None = option("A prompt is the first N words of a record (0: the whole record). Default: "
                                      f"{CORPUS_PROMPT_WORDS} for the built-in reviews, 0 for --prompts.", default=None)
    prompt_tokens: list[int] | None = option(
        "MIN MAX: a prompt is the first K policy tokens of a record, K drawn per record (seeded) from MIN..MAX, e.g. "
        "2 8 (the DPO paper's IMDb prefixes); instead of --prompt-words.", default=None)
    heldout_split: str | None = option("The split of a --prompts dataset held out for evaluation. Default: 'test' "
                                       "where there is one.", default=None)
    heldout_fraction: float | None = option(
        f"Without a held-out split: the seeded share of the --prompts records held out for evaluation. Default: "
        f"{DEFAULT_HELDOUT_FRACTION}.", default=None)
    max_new_tokens: int = option("Tokens sampled after each prompt.", default=32)
    temperature: float = option("Sampling temperature of the training data (metrics always sample at 1.0: the KL "
                               "is estimated from the policy's own distribution).",
                               default=1.0)
    batch_size: int = option("Sequences per generation / scoring batch.", default=64)

    def __post_init__(self) -> None:
        check_common(self)
        check_choice("preset", self.preset, PRESETS)
        check_choice("prompt_mode", self.prompt_mode, PROMPT_MODES)
        if self.num_samples is None:
            self.num_samples = PRESETS[self.preset].get("num_samples", DEFAULT_NUM_SAMPLES)
        check_positive(self, "num_samples", "samples_per_prompt", "max_new_tokens", "batch_size")
        check_positive(self, "temperature")
        self.policy = self.policy or PRESETS[self.preset]["policy"]
        self.reward = self.reward or PRESETS[self.preset]["reward"]
        if is_function_spec(self.reward):
            function_spec_parts(self.reward, "my_rewards.py:count_good_words")
            if self.positive_label is not None:
                raise PipelineError(f"--positive-label names a class of a classifier; the reward {self.reward} is a "
                                    "function: remove --positive-label")
        self._resolve_prompts()

    def _resolve_prompts(self) -> None:
        """The prompt source and rule: the preset's where unset; every option given is read, or refused."""
        own = ("prompts", "prompt_column", "prompt_tokens", "heldout_split", "heldout_fraction")
        if self.prompt_mode == "bos":
            given = [name for name in own if getattr(self, name) is not None]
            if given:
                raise PipelineError(f"--{given[0].replace('_', '-')} makes prompts from texts, which --prompt-mode "
                                    "bos does not use: remove it, or use --prompt-mode review")
            self.prompt_words = CORPUS_PROMPT_WORDS if self.prompt_words is None else self.prompt_words
            return
        preset = PRESETS[self.preset]
        if self.prompts is None and "prompts" in preset:
            self.prompts = preset["prompts"]
        if self.prompt_words is None and self.prompt_tokens is None:
            self.prompt_tokens = preset.get("prompt_tokens")
        if self.prompts is None:
            for name in ("prompt_column", "heldout_split", "heldout_fraction"):
                if getattr(self, name) is not None:  # the built-in reviews have one column and a fixed split
                    raise PipelineError(f"--{name.replace('_', '-')} is read with --prompts only (the built-in "
                                        "reviews have a fixed held-out part): remove it, or pass --prompts SOURCE")
        if self.prompt_tokens is not None:
            if self.prompt_words is not None:
                raise PipelineError("--prompt-words and --prompt-tokens are two rules for one prompt: pass one")
            tokens = self.prompt_tokens
            if len(tokens) != 2 or not 1 <= tokens[0] <= tokens[1]:
                raise PipelineError(f"--prompt-tokens takes MIN MAX with 1 <= MIN <= MAX, got "
                                    f"{' '.join(map(str, tokens))}; e.g. --prompt-tokens 2 8")
        elif self.prompt_words is None:
            self.prompt_words = CORPUS_PROMPT_WORDS if self.prompts is None else 0
        elif self.prompt_words < 0 or self.prompt_words == 0 and self.prompts is None:
            raise PipelineError(f"--prompt-words must be >= 1 (0, the whole record, is for --prompts sources: a "
                                f"whole built-in sentence leaves nothing to continue), got {self.prompt_words}")
        if self.heldout_fraction is not None and not 0 < self.heldout_fraction < 1:
            raise PipelineError(f"--heldout-fraction must be between 0 and 1, got {self.heldout_fraction}; e.g. 0.2")


@dataclass
class PairsConfig(CommonConfig):
    num_pairs: int = option("Preference pairs to build (0: every admissible pair of every prompt, e.g. all 28 of "
                            "8 samples per prompt, for training with --group-by-prompt).", default=0)
    strategy: str = option("'margin': random same-prompt pairs whose rewards differ by at least --margin; "
                          "'random': random same-prompt pairs; 'best_worst': the best and worst sample of each "
                          "prompt.", default="random")
    margin: float | None = option("--strategy margin only: minimum reward (logit) gap of a pair. Default: 0.5.",
                                  default=None)

    def __post_init__(self) -> None:
        check_common(self)
        check_choice("strategy", self.strategy, PAIR_STRATEGIES)
        check_non_negative(self, "num_pairs")
        if self.strategy != "margin":
            if self.margin is not None:  # an option the strategy does not read is refused, not ignored
                raise PipelineError(f"--margin is read by --strategy margin only, not {self.strategy!r}: remove "
                                    "--margin, or pass --strategy margin")
            return
        self.margin = DEFAULT_MARGIN if self.margin is None else self.margin
        check_non_negative(self, "margin")


# Pairs per step: 16 prompts' 28 pairs when grouped, 128 distinct texts; averaging this many pairs is what
# brought the KL overhead down (studies/against_the_ceiling/README.md at commit e3d212a).
PAIR_BATCH_SIZE = 448
# Completions per step of the online methods: 4 prompts x 4 generations, each sampled by TRL's generate.
ONLINE_BATCH_SIZE = 16


def default_batch_size(online: bool) -> int:
    """`--batch-size` when unset: the online methods count completions, the others pairs."""
    return ONLINE_BATCH_SIZE if online else PAIR_BATCH_SIZE


@dataclass
class TrainingConfig(CommonConfig):
    loss: str = option("Loss type of TRL's DPOTrainer (sigmoid = DPO, hinge = reference-anchored hinge, ipo, sft = "
                      "Preferred-FT, ...), 'slic' (SLiC-HF: reference-free hinge + NLL, CPOTrainer's loss), or an "
                      "online RL method on the training prompts: 'rloo', 'grpo', 'online_dpo'.", default="sigmoid")
    recipe: str | None = option(
        "What trains by default: 'standard' (every weight, or LoRA where the preset says so, fine-tuned on hard "
        "labels against the frozen starting policy: the method as its paper and TRL define it) or 'token-bias' (the "
        "project's recipe: a per-token logit bias started from the reward model's token scores, soft labels for "
        f"sigmoid, beta {RECIPES[TOKEN_BIAS]['beta']:g}). Each part is its own option and an explicit one wins. "
        "Default: 'standard' for the pair methods; the online methods have no recipe.", default=None)
    beta: float | None = option(
        "Strength of the pull toward the reference model (IPO's tau; the KL coefficient of rloo, grpo and "
        "online_dpo); for slic the hinge margin in log-likelihood is 1/beta. With soft labels the policy the loss "
        f"aims at is pi_ref * exp(reward / beta). Default: {RECIPES[STANDARD]['beta']:g} (standard), "
        f"{RECIPES[TOKEN_BIAS]['beta']:g} (token-bias), {ONLINE_BETA:g} (the online methods); sft has none.",
        default=None)
    slic_lambda: float | None = option("slic only: weight of the chosen text's NLL term (CPOTrainer's cpo_alpha). "
                                      "Default: 1.", default=None)
    learning_rate: float = option("Peak learning rate (linear decay after warm-up).", default=2e-4)
    epochs: float = option("Passes over the pairs.", default=2.0)
    max_steps: int = option("Stop after this many optimizer steps (-1: run all epochs).", default=-1)
    batch_size: int | None = option(
        f"Pairs per optimizer step (default {PAIR_BATCH_SIZE}); rloo, grpo, online_dpo: completions sampled per step "
        f"(default {ONLINE_BATCH_SIZE}).", default=None)
    gradient_accumulation_steps: int | None = option(
        "Pair methods only: split each batch of --batch-size pairs into N micro-batches whose gradients add up to "
        "the batch's: the same optimisation at about 1/N of the activation memory (--batch-size must be a multiple "
        "of N). Default: 1.", default=None)
    num_generations: int | None = option("rloo and grpo only: completions sampled per prompt (batch size must be a "
                                        "multiple). Default: 4.", default=None)
    warmup_ratio: float = option("Share of steps spent warming up the learning rate.", default=0.1)
    label_smoothing: float | None = option(
        f"Label smoothing, read by TRL {TRL_VERSION} only for {', '.join(LABEL_SMOOTHING_LOSSES)}. Default: 0 "
        f"(exo_pair, which needs > 0: {EXO_DEFAULT_LABEL_SMOOTHING:g}).", default=None)
    soft_labels: bool | None = option(
        "sigmoid only: label each pair with the reward's probability that its chosen text is preferred, "
        "sigmoid(chosen_reward - rejected_reward), instead of 1. The loss is then minimised by the KL-regularised "
        "optimum pi_ref * exp(reward / beta), the ceiling's point at the same beta, where hard labels push the "
        "chosen-rejected margin up without end. Default: the recipe's (off for standard, on for token-bias).",
        default=None)
    group_by_prompt: bool | None = option(
        "Fill each batch with whole prompts' pairs (the prompts in a seeded random order each epoch) instead of "
        "pairs in random order, and run each distinct text of a batch through the model once: with every pair of 8 "
        "samples per prompt (prepare_dataset.py --num-pairs 0), a batch of 448 pairs is 16 prompts' 28 pairs, "
        "computed as 128 texts. It changes the cost and the order of the pairs, not the loss. Default: on for the "
        "pair methods; the online methods train on prompts.", default=None)
    precompute_ref_log_probs: bool | None = option(
        "Compute the frozen starting policy's log-probs once before training instead of every step (the same "
        "numbers either way; slic has no reference). Default: on.", default=None)
    logit_bias: bool | None = option(
        "Train only a per-token logit bias (one number per vocabulary token, added to every next-token logit: the "
        "policy is the reference times exp(bias) at every step) instead of the network's weights. Needs a final "
        "LayerNorm with a bias (GPT-2 family): saved as the same architecture with an untied LM head that adds the "
        "bias exactly. Default: the recipe's (off for standard, on for token-bias).", default=None)
    bias_start: str | None = option(
        "Where a trained logit bias starts: 'reward' (the reward model's own score of each vocabulary token, scored "
        "in a few short review phrases, scaled to the reward on the training pairs: the optimum pi_ref * "
        "exp(reward / beta) if the reward were those token scores; the samples then correct it) or 'zero' (the "
        "reference itself). Default: 'reward' under the token-bias recipe, else 'zero'.", default=None)
    lora_rank: int = option("Train rank-R LoRA adapters on every linear layer instead of all weights (0: no "
                           "adapters). The adapters are merged into the saved model.", default=0)
    lora_alpha: float | None = option("LoRA scale numerator (adapter updates are scaled by alpha / rank); needs "
                                     "--lora-rank. Default: 16.", default=None)
    report_to: str = option("Experiment tracker the trainer logs to: 'none', 'tensorboard' (event files in "
                           "models/LOSS/runs/) or 'wandb'.", default="none")
    save_steps: int = option("Save a resumable checkpoint every N steps under models/.LOSS.checkpoints (0: never).",
                            default=0)
    resume: bool = option("Resume an interrupted training from its last checkpoint (needs --save-steps).",
                         default=False)
    method_name: str | None = option(
        "A loss from a file (LOSS = FILE.py:FUNCTION) only: the name its outputs carry (models/NAME, results/NAME, "
        "tables, plots); not a built-in method's. Default: the function's name.", default=None)

    @property
    def name(self) -> str:
        """The method's name in outputs: models/NAME, results/NAME, tables and plots."""
        return self.method_name or self.loss

    def __post_init__(self) -> None:
        check_common(self)
        check_method(self.loss)
        resolve_method_name(self)
        check_choice("report_to", self.report_to, REPORT_TO)
        for name in READ_BY:  # an option the method does not read is refused, not ignored
            if getattr(self, name) is not None:
                check_reads(self.loss, name)
        if self.recipe is not None:
            check_choice("recipe", self.recipe, RECIPES)
        if self.lora_alpha is not None and not self.lora_rank:
            raise PipelineError("--lora-alpha scales LoRA adapters, and this run trains none: pass --lora-rank R "
                                "or remove --lora-alpha")
        self._resolve_defaults()
        check_positive(self, "learning_rate", "epochs", "batch_size")
        check_non_negative(self, "warmup_ratio", "save_steps", "lora_rank")
        for name, value in (("beta", self.beta), ("lora_alpha", self.lora_alpha)):
            if value is not None:
                check_positive(self, name)
        if self.slic_lambda is not None:
            check_non_negative(self, "slic_lambda")
        if self.label_smoothing is not None:
            check_non_negative(self, "label_smoothing")
            if self.label_smoothing >= 0.5:  # robust divides by 1 - 2ε
                raise PipelineError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}; e.g. 0.1")
        if self.warmup_ratio >= 1:
            raise PipelineError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}; e.g. 0.1")
        if self.max_steps == 0 or self.max_steps < -1:
            raise PipelineError(f"--max-steps must be -1 (all epochs) or > 0, got {self.max_steps}")
        if self.num_generations is not None and self.num_generations < 2:
            raise PipelineError(f"--num-generations must be >= 2 (a baseline needs another sample of the prompt), "
                                f"got {self.num_generations}")
        if self.bias_start is not None:
            check_choice("bias_start", self.bias_start, BIAS_STARTS)

    def _resolve_defaults(self) -> None:
        """Each unset option the method reads from the recipe, then the option's own default; those it does not
        read stay None (so a resolved config passed back with --config is accepted as it is)."""
        pairs = trains_on_pairs(self.loss)
        if self.batch_size is None:
            self.batch_size = default_batch_size(online=not pairs)
        if self.lora_rank and self.lora_alpha is None:
            self.lora_alpha = 16.0
        if self.num_generations is None and reads(self.loss, "num_generations"):
            self.num_generations = 4
        if not pairs:
            self.beta = ONLINE_BETA if self.beta is None else self.beta
            return
        self.recipe = self.recipe or STANDARD
        explicit_bias = self.logit_bias
        for name, value in recipe_defaults(self.recipe, self.loss).items():
            if getattr(self, name) is None and not (name == "bias_start" and explicit_bias is False):
                setattr(self, name, value)
        if self.lora_rank and self.logit_bias:
            raise PipelineError("a logit bias (--logit-bias, or --recipe token-bias) and --lora-rank are two ways to "
                                "choose what trains: pass --no-logit-bias to train LoRA, or remove --lora-rank")
        if self.bias_start is not None and not self.logit_bias:
            raise PipelineError("--bias-start says where a trained logit bias starts, and this run trains none: "
                                "remove --bias-start, or train the bias (--logit-bias)")
        if self.logit_bias and self.bias_start is None:
            self.bias_start = "zero"
        if self.group_by_prompt is None:
            self.group_by_prompt = True
        if self.gradient_accumulation_steps is None:
            self.gradient_accumulation_steps = 1
        check_positive(self, "gradient_accumulation_steps")
        if self.batch_size % self.gradient_accumulation_steps:
            raise PipelineError(f"--batch-size {self.batch_size} is not a multiple of --gradient-accumulation-steps "
                                f"{self.gradient_accumulation_steps}; pass a batch size that is, e.g. "
                                f"{self.batch_size - self.batch_size % self.gradient_accumulation_steps}")
        if self.precompute_ref_log_probs is None and reads(self.loss, "precompute_ref_log_probs"):
            self.precompute_ref_log_probs = True
        if self.slic_lambda is None and reads(self.loss, "slic_lambda"):
            self.slic_lambda = 1.0
        if self.label_smoothing is None and reads(self.loss, "label_smoothing"):
            self.label_smoothing = EXO_DEFAULT_LABEL_SMOOTHING if self.loss == "exo_pair" else 0.0


@dataclass
class MetricsConfig(CommonConfig):
    loss: str = option("Which trained model to evaluate: models/LOSS (a built-in method, the name of a loss from a "
                       "file, or FILE.py:FUNCTION).", default="sigmoid")
    num_prompts: int = option("Held-out prompts (never used for training) to sample from.", default=256)
    samples_per_prompt: int = option("Samples per held-out prompt from each model.", default=1)
    batch_size: int = option("Sequences per generation / scoring batch.", default=64)
    judge: str | None = option("Held-out judge: a second sentiment classifier used only to evaluate (folder, hub id, "
                              "'embedded', or 'none'), or your own function FILE.py:FUNCTION (texts -> one float "
                              "each). Default: the preset's (the embedded judge).", default=None)
    ceiling_samples: int = option("Reference samples per held-out prompt for the ceiling (the KL-regularised optimum "
                                 "and best-of-n), drawn once per content and cached; 0: no ceiling.", default=64)
    method_name: str | None = option("With LOSS = FILE.py:FUNCTION: the name it was trained under (main.py's "
                                     "--method-name). Default: the function's name.", default=None)

    @property
    def name(self) -> str:
        """The method's name in outputs: models/NAME, results/NAME."""
        return self.method_name or self.loss

    def __post_init__(self) -> None:
        check_common(self)
        resolve_method_name(self)
        check_positive(self, "num_prompts", "samples_per_prompt", "batch_size")
        check_non_negative(self, "ceiling_samples")
        if self.judge is not None and is_function_spec(self.judge):
            function_spec_parts(self.judge, "my_judges.py:count_good_words")
        if self.ceiling_samples == 1:
            raise PipelineError("--ceiling-samples needs at least 2 samples per prompt (or 0 for no ceiling); "
                                "use the default 64")


def resolve_method_name(config: Any) -> None:
    """A loss from a file takes its function's name or --method-name (not a built-in's); a built-in method none."""
    if is_own_loss(config.loss) or config.method_name is not None:
        config.method_name = method_name(config.loss, config.method_name)


def check_choice(name: str, value: str, choices: typing.Iterable[str]) -> None:
    if value not in choices:
        raise PipelineError(f"--{name.replace('_', '-')} {value!r} is not one of: {', '.join(choices)}")


def check_positive(config: Any, *names: str) -> None:
    """Each option is a finite number > 0 (NaN compares false with everything, so it is refused explicitly)."""
    for name in names:
        value = getattr(config, name)
        if not (math.isfinite(value) and value > 0):
            raise PipelineError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")


def check_non_negative(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise PipelineError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
