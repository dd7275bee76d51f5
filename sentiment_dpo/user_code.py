"""A user's function named `FILE.py:FUNCTION` on the command line (a pair loss, a reward, a judge): imported with
importlib from its path, once per process for the same bytes, with one-line errors that name the file and the fix.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PipelineError


def is_function_spec(spec: str) -> bool:
    """Whether `spec` names a user's function (`FILE.py:FUNCTION`) rather than a built-in name, folder or hub id."""
    return ".py:" in spec


def function_spec_parts(spec: str, example: str) -> tuple[str, str]:
    """(file, function) of `FILE.py:FUNCTION`, or a one-line error that shows `example`."""
    file, _, function = spec.rpartition(":")
    if not file.endswith(".py") or not function.isidentifier():
        raise PipelineError(f"{spec!r} is not FILE.py:FUNCTION; name a Python file and a function in it, e.g. "
                            f"{example}")
    return file, function


def absolute_spec(spec: str) -> str:
    """`spec` with its file made absolute where it names a user's function (a later stage, run from another folder,
    reads it from a record); any other spec as given."""
    if not is_function_spec(spec):
        return spec
    file, _, function = spec.rpartition(":")
    return f"{Path(file).expanduser().resolve()}:{function}"


@dataclass(frozen=True)
class UserFunction:
    """A function from a user's file: where it is, the SHA-256 of the file's bytes, and the function."""
    spec: str
    path: Path
    function_name: str
    sha256: str
    function: Callable[..., Any]

    def record(self) -> dict[str, str]:
        """What an artifact's provenance says of it."""
        return {"file": str(self.path), "function": self.function_name, "sha256": self.sha256}


def load_function(spec: str, example: str) -> UserFunction:
    """Import `FILE.py:FUNCTION` (`example`: a valid spec shown when `spec` is not one)."""
    file, name = function_spec_parts(spec, example)
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise PipelineError(f"{spec}: {file} is not a file; pass FILE.py:FUNCTION with an existing Python file")
    return _load(spec, path, name, path.read_bytes())


@functools.lru_cache(maxsize=None)
def _load(spec: str, path: Path, name: str, source: bytes) -> UserFunction:
    sha256 = hashlib.sha256(source).hexdigest()
    module_name = f"sentiment_dpo_user_{sha256[:16]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # the user's file: any error it raises is theirs to fix
        raise PipelineError(f"{spec}: importing {path.name} raised {type(err).__name__}: {first_line(err)}; fix "
                            "the file") from None
    sys.modules.setdefault(module_name, module)
    function = getattr(module, name, None)
    if not callable(function):
        defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module_name)
        raise PipelineError(f"{spec}: {path.name} defines no function {name!r} (its functions: "
                            f"{', '.join(defined) or 'none'}); name one after the colon")
    return UserFunction(spec, path, name, sha256, function)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"
