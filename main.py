#!/usr/bin/env python3
"""Stage 3: fine-tune the starting policy on the pairs with TRL's DPOTrainer and the given LOSS (models/LOSS)."""

import sys

from sentiment_dpo.cli import main_for
from sentiment_dpo.config import TrainingConfig


def stage(config: TrainingConfig) -> None:
    from sentiment_dpo.training import run

    run(config)


def main(argv: list[str] | None = None) -> int:
    return main_for(TrainingConfig, __doc__, stage, positional="loss", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
