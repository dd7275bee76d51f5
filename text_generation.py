#!/usr/bin/env python3
"""Stage 1: sample reviews from the starting policy and score each with the sentiment classifier."""

import sys

from sentiment_dpo.cli import main_for
from sentiment_dpo.config import GenerationConfig


def stage(config: GenerationConfig) -> None:
    from sentiment_dpo.sample_and_score import run

    run(config)


def main(argv: list[str] | None = None) -> int:
    return main_for(GenerationConfig, __doc__, stage, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
