#!/usr/bin/env python3
"""Stage 4: reference vs models/LOSS on held-out prompts: reward, KL, diversity, win rate (results/LOSS)."""

import sys

from sentiment_dpo.cli import main_for
from sentiment_dpo.config import MetricsConfig


def stage(config: MetricsConfig) -> None:
    from sentiment_dpo.evaluation import run

    run(config)


def main(argv: list[str] | None = None) -> int:
    return main_for(MetricsConfig, __doc__, stage, positional="loss", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
