#!/usr/bin/env python3
"""Run all four stages (text_generation, prepare_dataset, then main + calculate_metrics per loss) and write SUMMARY.md.

Per-stage options go in --config FILE.yaml, e.g.

    run_dir: runs/mine
    losses: [sigmoid, hinge, ipo]
    training: {learning_rate: 1.0e-4, epochs: 2}
"""

import argparse
import sys

from sentiment_dpo.cli import environment_problem, setup_logging
from sentiment_dpo.config import PRESETS, PROMPT_OPTIONS, GenerationConfig, add_options
from sentiment_dpo.methods import RECIPES
from sentiment_dpo.distributed import shutdown
from sentiment_dpo.errors import PipelineError


def make_parser() -> argparse.ArgumentParser:
    from sentiment_dpo.pipeline import PipelineConfig

    default = PipelineConfig()  # the help states PipelineConfig's own defaults: unset options fall back to them
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE.yaml", help="pipeline YAML (top-level keys and per-stage sections)")
    parser.add_argument("--run-dir",
                        help=f"where data/, models/, results/ and SUMMARY.md go (default: {default.run_dir})")
    parser.add_argument("--losses", nargs="+", metavar="LOSS",
                        help=f"loss types to train (default: {' '.join(default.losses)})")
    parser.add_argument("--seed", type=int, help=f"seed for every stage (default: {default.seed})")
    parser.add_argument("--preset", choices=list(PRESETS), help=f"model pair (default: {default.preset})")
    parser.add_argument("--recipe", choices=list(RECIPES),
                        help="what the pair methods train: 'standard' (every weight, hard labels: the methods as "
                             "their papers and TRL define them; the default) or 'token-bias' (the project's "
                             "per-token logit-bias recipe)")
    add_options(parser.add_argument_group("prompts (stage 1's options; every later stage reads them from its "
                                          "record)"), GenerationConfig, PROMPT_OPTIONS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        from sentiment_dpo.pipeline import PipelineConfig, load_pipeline_yaml, run

        values = load_pipeline_yaml(args.config) if args.config else {}
        options = vars(args)
        prompt_options = {name: options.pop(name) for name in PROMPT_OPTIONS if name in options}
        values |= {k: v for k, v in options.items() if k != "config" and v is not None}
        values["generation"] = values.get("generation", {}) | prompt_options
        setup_logging()
        summary = run(PipelineConfig(**values))
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        shutdown(wait=False)
        return 2
    except OSError as err:  # a full disk, a read-only or missing folder
        print(f"error: {environment_problem(err)}", file=sys.stderr)
        shutdown(wait=False)
        return 2
    shutdown()
    print(f"summary: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
