"""The peak resident memory of this process while a block runs: what a stage needs of the machine's memory.

`resource.getrusage`'s maximum only grows over the life of the process, so a later stage that needs less than an
earlier one would show the earlier one's peak; a thread samples the resident set instead (every 0.2 s: a peak
shorter than that can be missed, and the sampled peak is a lower bound).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SAMPLE_SECONDS = 0.2


@dataclass
class Peak:
    bytes: int = 0

    @property
    def gigabytes(self) -> float:
        return self.bytes / 2**30


@contextmanager
def peak_memory() -> Iterator[Peak]:
    """The largest resident set size of this process seen while the body runs."""
    import psutil

    process, peak, done = psutil.Process(), Peak(), threading.Event()

    def sample() -> None:
        while True:
            peak.bytes = max(peak.bytes, process.memory_info().rss)
            if done.wait(SAMPLE_SECONDS):
                return

    thread = threading.Thread(target=sample, name="peak-memory", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak.bytes = max(peak.bytes, process.memory_info().rss)
