"""Library warnings a user can do nothing about, silenced where each library raises them (never process-wide)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# transformers' FutureWarning when peft or TRL read its deprecated `is_gradient_checkpointing` property
CHECKPOINTING_DEPRECATION = "`is_gradient_checkpointing` is deprecated"


@contextmanager
def silenced(*messages: str) -> Iterator[None]:
    """The body without the warnings whose text starts with one of `messages`."""
    with warnings.catch_warnings():
        for message in messages:
            warnings.filterwarnings("ignore", message=message)
        yield
