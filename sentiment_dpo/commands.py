"""The command-line entry points: the four stages, the pipeline and the sweep. The top-level scripts
(`text_generation.py`, ...) are shims over these. Each parses its flags, runs, and returns the exit code (0 ok, 2 for
a problem the user can fix); nothing heavy is imported before the flags are parsed, so `--help` is instant."""

from __future__ import annotations

import argparse
import sys

from .cli import exit_code_of, main_for, start
from .config import BITWISE_HELP, PROMPT_OPTIONS, GenerationConfig, MetricsConfig, PairsConfig, TrainingConfig
from .config_parser import add_options
from .presets import PRESETS
from .methods.registry import RECIPES

GENERATE = "Stage 1: sample reviews from the starting policy and score each with the sentiment classifier."
PAIRS = "Stage 2: build winner/loser preference pairs from the scored samples (data/pairs.jsonl)."
TRAIN = """Stage 3: train the starting policy with the given LOSS (models/LOSS): by default the method as its paper
and TRL define it (every weight fine-tuned on hard labels against the frozen starting policy); --recipe token-bias
for the project's per-token logit-bias recipe."""
EVALUATE = "Stage 4: reference vs models/LOSS on held-out prompts: reward, KL, diversity, win rate (results/LOSS)."
SWEEP = """Sweep: train every loss x beta x learning rate x seed (x rounds) on shared preference pairs, evaluate
checkpoints on held-out prompts as they train, and write report.md with the reward-KL frontier. Rerunning resumes:
finished trainings are kept."""
PIPELINE = """Run all four stages (text_generation, prepare_dataset, then main + calculate_metrics per loss) and
write SUMMARY.md.

Per-stage options go in --config FILE.yaml, e.g.

    run_dir: runs/mine
    losses: [sigmoid, hinge, ipo]
    training: {learning_rate: 1.0e-4, epochs: 2}
"""


def generate(argv: list[str] | None = None) -> int:
    def stage(config: GenerationConfig) -> None:
        from .stages.generate import run

        run(config)

    return main_for(GenerationConfig, GENERATE, stage, argv=argv)


def pairs(argv: list[str] | None = None) -> int:
    def stage(config: PairsConfig) -> None:
        from .stages.pairs import run

        run(config)

    return main_for(PairsConfig, PAIRS, stage, argv=argv)


def train(argv: list[str] | None = None) -> int:
    def stage(config: TrainingConfig) -> None:
        from .stages.train import run

        run(config)

    def defaults(values: dict) -> dict:
        from .stages.train import defaults_from_run

        return defaults_from_run(values)

    return main_for(TrainingConfig, TRAIN, stage, positional="loss", argv=argv, defaults=defaults)


def evaluate(argv: list[str] | None = None) -> int:
    def stage(config: MetricsConfig) -> None:
        from .stages.evaluate import run

        run(config)

    return main_for(MetricsConfig, EVALUATE, stage, positional="loss", argv=argv)


def sweep(argv: list[str] | None = None) -> int:
    from .experiments.sweep import SweepConfig

    def stage(config: SweepConfig) -> None:
        from pathlib import Path

        from .experiments.sweep import run
        from .experiments.sweep_report import write_report

        run(config)
        write_report(Path(config.run_dir), config)

    return main_for(SweepConfig, SWEEP, stage, argv=argv)


def pipeline_parser() -> argparse.ArgumentParser:
    from .stages.pipeline import PipelineConfig

    default = PipelineConfig()  # the help states PipelineConfig's own defaults: unset options fall back to them
    parser = argparse.ArgumentParser(description=PIPELINE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE.yaml", help="pipeline YAML (top-level keys and per-stage sections)")
    parser.add_argument("--run-dir",
                        help=f"where data/, models/, results/ and SUMMARY.md go (default: {default.run_dir})")
    parser.add_argument("--losses", nargs="+", metavar="LOSS",
                        help=f"loss types to train (default: {' '.join(default.losses)})")
    parser.add_argument("--seed", type=int, help=f"seed for every stage (default: {default.seed})")
    parser.add_argument("--preset", choices=list(PRESETS), help=f"model pair (default: {default.preset})")
    parser.add_argument("--bitwise", action="store_const", const=True, help=BITWISE_HELP)
    parser.add_argument("--recipe", choices=list(RECIPES),
                        help="what the pair methods train: 'standard' (every weight, hard labels: the methods as "
                             "their papers and TRL define them; the default) or 'token-bias' (the project's "
                             "per-token logit-bias recipe)")
    models = parser.add_argument_group("models (where given, instead of the preset's)")
    add_options(models, GenerationConfig, MODEL_OPTIONS)
    add_options(models, MetricsConfig, JUDGE_OPTION)
    add_options(parser.add_argument_group("prompts (stage 1's options; every later stage reads them from its "
                                          "record)"), GenerationConfig, PROMPT_OPTIONS)
    return parser


# the pipeline's options of stage 1 (the models, the prompts) and of stage 4 (the judge)
MODEL_OPTIONS = ("policy", "reward")
JUDGE_OPTION = ("judge",)


def pipeline(argv: list[str] | None = None) -> int:
    args = pipeline_parser().parse_args(argv)

    def command() -> None:
        from .stages.pipeline import PipelineConfig, load_pipeline_yaml, run

        values = load_pipeline_yaml(args.config) if args.config else {}
        options = vars(args)
        # unset stage options are absent (argparse.SUPPRESS): the YAML's or the stage's default stands
        generation = {name: options.pop(name) for name in (*MODEL_OPTIONS, *PROMPT_OPTIONS) if name in options}
        metrics = {name: options.pop(name) for name in JUDGE_OPTION if name in options}
        values |= {k: v for k, v in options.items() if k != "config" and v is not None}
        for section, given in (("generation", generation), ("metrics", metrics)):
            values[section] = values.get(section, {}) | given
        config = PipelineConfig(**values)
        start(config.bitwise)
        print(f"summary: {run(config)}")

    return exit_code_of(command)


# name: (entry point, one line for the listing, the script it mirrors)
COMMANDS = {
    "generate": (generate, "stage 1: sample from the starting policy and score each sample", "text_generation.py"),
    "pairs": (pairs, "stage 2: winner/loser pairs from the scored samples", "prepare_dataset.py"),
    "train": (train, "stage 3: train the policy with a method (LOSS)", "main.py"),
    "evaluate": (evaluate, "stage 4: reference vs trained policy on held-out prompts, and the ceiling",
                 "calculate_metrics.py"),
    "pipeline": (pipeline, "all four stages for one or more methods, and SUMMARY.md", "run_pipeline.py"),
    "sweep": (sweep, "grids of trainings on shared pairs, and the reward-KL frontier report", "sweep.py"),
}


def console(argv: list[str] | None = None) -> int:
    """`sentiment-dpo COMMAND [OPTIONS]`: the installed command, one subcommand per script."""
    argv = sys.argv[1:] if argv is None else argv
    listing = "\n".join(f"  {name:<9} {text} ({script})" for name, (_, text, script) in COMMANDS.items())
    usage = (f"usage: sentiment-dpo COMMAND [OPTIONS]   (sentiment-dpo COMMAND --help for its options)\n\n"
             f"commands:\n{listing}")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: {name!r} is not a command of sentiment-dpo; use one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    sys.argv[0] = f"sentiment-dpo {name}"  # argparse names the program in its usage line from argv[0]
    return COMMANDS[name][0](rest)
