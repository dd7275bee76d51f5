"""What the four scripts share: parse flags into a stage config, set up logging, turn errors into one line."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .config_parser import make_parser, parse_config
from .distributed import is_main_process, shutdown
from .errors import Interrupted, PipelineError
from .kernels import use_bitwise_kernels


def setup_logging() -> None:
    """INFO on the main process; under torchrun / accelerate launch the other processes only warn, and show no
    progress bars, so a run logs once rather than once per process."""
    main = is_main_process()
    if not main:
        os.environ["TQDM_DISABLE"] = "1"
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO") if main else "WARNING", datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def environment_problem(err: OSError) -> str:
    """One line naming the path and the cause of a file-system error, and what to do about it. Every artifact is
    written to a temporary file and renamed, so what was written before is untouched."""
    where = f"{err.filename}: " if err.filename else ""
    fix = {errno.ENOSPC: "free some disk space", errno.EACCES: "check the folder's permissions",
           errno.EROFS: "use a writable --run-dir", errno.ENOTDIR: "a path component is a file: use another --run-dir",
           errno.EEXIST: "remove the file in the way"}.get(err.errno, "check the path")
    return f"{where}{err.strerror or err}; {fix} and rerun (earlier artifacts are unchanged)"


INTERRUPTED = ("every artifact written before is kept (each is written whole or not at all); rerun the command to "
               "go on")


def exit_code_of(command: Callable[[], Any]) -> int:
    """Run a command's body and return the process exit code: 0 when it finishes, 2 with one `error:` line for a
    problem the user can fix (the input, or the machine's files), 130 with one line on Ctrl-C."""
    try:
        command()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
    except OSError as err:  # the machine, not the input: a full disk, a read-only or missing folder
        print(f"error: {environment_problem(err)}", file=sys.stderr)
    except Interrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        shutdown(wait=False)
        return 130
    except KeyboardInterrupt:
        print(f"interrupted: {INTERRUPTED}", file=sys.stderr)
        shutdown(wait=False)
        return 130
    else:
        shutdown()
        return 0
    shutdown(wait=False)
    return 2


def start(bitwise: bool) -> None:
    """What every command does once its options are read, before it computes: logging, and the kernels."""
    setup_logging()
    if bitwise:
        use_bitwise_kernels()


def main_for(config_cls: type, description: str, stage: Callable[[Any], Any], positional: str | None = None,
             argv: list[str] | None = None, defaults: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> int:
    """Entry point of one stage script: returns the process exit code (`exit_code_of`). `defaults`: as
    `config_parser.parse_config`'s."""
    parser = make_parser(config_cls, description, positional)

    def command() -> None:
        config = parse_config(config_cls, parser, argv, required=positional, defaults=defaults)
        start(config.bitwise)
        stage(config)

    return exit_code_of(command)
