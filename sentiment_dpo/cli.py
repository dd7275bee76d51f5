"""What the four scripts share: parse flags into a stage config, set up logging, turn errors into one line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .config import make_parser, parse_config
from .distributed import is_main_process, shutdown
from .errors import PipelineError


def setup_logging() -> None:
    """INFO on the main process; under torchrun / accelerate launch the other processes only warn, and show no
    progress bars, so a run logs once rather than once per process."""
    main = is_main_process()
    if not main:
        os.environ["TQDM_DISABLE"] = "1"
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO") if main else "WARNING", datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main_for(config_cls: type, description: str, stage: Callable[[Any], Any], positional: str | None = None,
             argv: list[str] | None = None) -> int:
    """Entry point of one stage script: returns the process exit code (0 ok, 2 for a user-fixable problem)."""
    parser = make_parser(config_cls, description, positional)
    try:
        config = parse_config(config_cls, parser, argv, required=positional)
        setup_logging()
        stage(config)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        shutdown(wait=False)
        return 2
    shutdown()
    return 0
