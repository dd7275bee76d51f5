#!/usr/bin/env python3
"""Sweep: train every loss x beta x learning rate x seed (x rounds) on shared preference pairs, evaluate checkpoints
on held-out prompts as they train, and write report.md with the reward-KL frontier. Rerunning resumes: finished
trainings are kept."""

import sys

from sentiment_dpo.cli import main_for
from sentiment_dpo.sweep import SweepConfig


def stage(config: SweepConfig) -> None:
    from sentiment_dpo.sweep import run

    run(config)


def main(argv: list[str] | None = None) -> int:
    return main_for(SweepConfig, __doc__, stage, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
