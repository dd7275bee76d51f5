#!/usr/bin/env python3
"""Stage 2: build winner/loser preference pairs from the scored samples (data/pairs.jsonl)."""

import sys

from sentiment_dpo.cli import main_for
from sentiment_dpo.config import PairsConfig


def stage(config: PairsConfig) -> None:
    from sentiment_dpo.pairs import run

    run(config)


def main(argv: list[str] | None = None) -> int:
    return main_for(PairsConfig, __doc__, stage, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
