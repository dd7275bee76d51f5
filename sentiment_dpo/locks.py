"""One writer per stage output: a lock file beside the folder a stage replaces (models/LOSS, results/LOSS).

A second run on the same output is refused at once, in one line. A lock whose process no longer runs on this
machine (killed, crashed) is stale and taken over, so a crash never leaves a run directory stuck.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .distributed import is_main_process, on_every_process
from .errors import PipelineError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _try_acquire(lock: Path) -> str | None:
    """Create the lock file; None on success, else a description of its holder."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                holder = {}
            same_host = holder.get("host") == socket.gethostname()
            if same_host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                lock.unlink(missing_ok=True)  # its process is gone: stale
                continue
            return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
        with os.fdopen(fd, "w") as handle:
            handle.write(record)
        return None
    return "another process"


@contextmanager
def exclusive(output: Path, command: str, all_processes: bool = True) -> Iterator[None]:
    """Hold the lock of `output` (a folder a stage writes) while the body runs; the main process takes it and,
    with `all_processes`, every process learns the outcome, so all of them refuse together (without: only the
    main process runs this)."""
    lock = output.with_name(f".{output.name}.lock")
    holder = _try_acquire(lock) if is_main_process() else None
    if all_processes:
        holder = on_every_process(holder)
    if holder is not None:
        raise PipelineError(f"{output} is being written by {holder} (`{command}`); wait for it to finish, or use "
                            f"another --run-dir (if no such process runs, delete {lock})")
    try:
        yield
    finally:
        if is_main_process():
            lock.unlink(missing_ok=True)
