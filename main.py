#!/usr/bin/env python3
"""Stage 3: train the starting policy with the given LOSS (models/LOSS): by default the method as its paper and TRL
define it (every weight fine-tuned on hard labels against the frozen starting policy); --recipe token-bias for the
project's per-token logit-bias recipe."""

import sys

from sentiment_dpo.cli import main_for
from sentiment_dpo.config import TrainingConfig


def stage(config: TrainingConfig) -> None:
    from sentiment_dpo.training import run

    run(config)


def defaults(values: dict) -> dict:
    from sentiment_dpo.training import defaults_from_run

    return defaults_from_run(values)


def main(argv: list[str] | None = None) -> int:
    return main_for(TrainingConfig, __doc__, stage, positional="loss", argv=argv, defaults=defaults)


if __name__ == "__main__":
    sys.exit(main())
