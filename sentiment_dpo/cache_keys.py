"""The one key builder of every cache: stage 1's rows, the ceiling's samples, the reference log-probs, the merged
classifiers and the SmolLM2 folder. A key holds what the entry was computed from (the caller's record, by content)
and what computed it: this schema's version, the versions of the libraries whose code shapes the numbers, and the
kernels in effect, so an upgrade or a change of kernels is a miss, never a stale entry."""

from __future__ import annotations

from typing import Any

from . import files

# Raise when what an entry holds, or how it is computed, changes without any library or input changing (a fix to the
# sampler, a new field in the rows): every entry written before is then a miss.
SCHEMA_VERSION = 1


def computed_with() -> dict[str, Any]:
    """What computes an entry besides its inputs: the schema, the libraries, the kernels."""
    return {"schema": SCHEMA_VERSION, **files.computed_by()}


def cache_key(kind: str, inputs: dict[str, Any]) -> str:
    """The hex key of a `kind` entry (generations, ceiling, ...) computed from `inputs` (JSON-able, by content)."""
    return files.record_digest({"cache": kind, "inputs": inputs, **computed_with()})
