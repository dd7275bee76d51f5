"""Reading and writing the run directory's artifacts: atomic writes, validated JSONL, provenance helpers (where
each artifact lives: layout.py)."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from .errors import PipelineError
from . import kernels

def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file: recorded in provenance so an artifact names the exact data it came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_digest(record: dict[str, Any]) -> str:
    """Hex SHA-256 of a record (its JSON with sorted keys; values JSON cannot hold as their str): the key of a
    cache entry computed from what the record lists."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


# The libraries whose code shapes the numbers, this package included: each artifact's provenance and each cache key.
LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "sentiment-dpo")


def library_versions() -> dict[str, str]:
    """The installed version of each of `LIBRARIES` ("" where one is not installed)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = ""
    return out


def computed_by() -> dict[str, Any]:
    """What computed an artifact besides its inputs, for its provenance: the library versions and the kernel state
    in effect (cache keys hold the same, `cache_keys.computed_with`)."""
    return {"libraries": library_versions(), "kernels": kernels.in_effect()}


def machine_description() -> dict[str, Any]:
    """The CPU a run's timings were measured on and the kernels torch picked for it: timings only compare on one
    machine, and floating-point results agree byte for byte only where these agree."""
    import platform

    import torch

    info = kernels.first_processor()  # a VM's model name can be generic, its model number is not
    cpu = info.get("model name") or platform.processor() or platform.machine()
    if "vendor_id" in info:
        cpu += f" ({info['vendor_id']} family {info.get('cpu family')} model {info.get('model')})"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "kernels": kernels.in_effect(),
            "platform": platform.platform()}


def _default_mode(directory: bool) -> int:
    """The permissions a plain open()/mkdir() would give (mkstemp/mkdtemp make private ones)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, _default_mode(directory=False))
    return Path(name)


def make_staging_dir(final: Path) -> Path:
    """An empty folder beside `final` to write a multi-file artifact into before `replace_dir_atomic`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(staging, _default_mode(directory=True))
    return staging


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves a half-written file."""
    tmp = _temp_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None:  # a failed write names no file: name the artifact
            err.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def check_no_file_in_the_way(folder: Path) -> None:
    """Refuse a plain file where an artifact folder goes: it is the user's, and is neither moved aside nor replaced."""
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"{folder} is a file, where this stage writes a folder; remove the file in the way (or "
                            "use another --run-dir)")


def replace_dir_atomic(staged: Path, final: Path) -> None:
    """Move a fully written folder into place; an existing folder is replaced only once the new one is complete.
    Its files get the permissions a plain open() would give (safetensors writes model files private, 0600)."""
    check_no_file_in_the_way(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    file_mode, dir_mode = _default_mode(directory=False), _default_mode(directory=True)
    for file in staged.rglob("*"):
        os.chmod(file, dir_mode if file.is_dir() else file_mode)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)


def read_jsonl(path: Path, required: Sequence[str], produced_by: str) -> list[dict[str, Any]]:
    """Rows of a JSONL file, each checked to be an object with the `required` keys.

    Errors name the file, the line, and the stage (`produced_by`) that makes the file.
    """
    if not path.exists():
        raise PipelineError(f"{path} not found; run `{produced_by}` first (or pass the right --run-dir)")
    rows = []
    try:
        rows = _read_jsonl_rows(path, required, produced_by)
    except UnicodeDecodeError as err:
        raise PipelineError(f"{path} is not UTF-8 text (byte {err.start}); rerun `{produced_by}`") from None
    except OSError as err:
        raise PipelineError(f"{path} cannot be read ({err.strerror}); check its permissions") from None
    if not rows:
        raise PipelineError(f"{path} has no rows; rerun `{produced_by}`")
    return rows


def _read_jsonl_rows(path: Path, required: Sequence[str], produced_by: str) -> list[dict[str, Any]]:
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open  # a shipped file is compressed
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                raise PipelineError(f"{path} line {line_no} is empty; delete the line or rerun `{produced_by}`")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineError(
                    f"{path} line {line_no} is not valid JSON ({err.msg}); fix the line or rerun `{produced_by}`"
                ) from None
            if not isinstance(row, dict):
                raise PipelineError(f"{path} line {line_no} is not a JSON object; rerun `{produced_by}`")
            missing = [key for key in required if key not in row]
            if missing:
                raise PipelineError(
                    f"{path} line {line_no} lacks column(s) {', '.join(missing)}; rerun `{produced_by}`"
                )
            rows.append(row)
    return rows


def read_yaml(path: Path, produced_by: str) -> dict[str, Any]:
    if not path.exists():
        raise PipelineError(f"{path} not found; run `{produced_by}` first (or pass the right --run-dir)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PipelineError(f"{path} is not valid YAML ({err.__class__.__name__}); rerun `{produced_by}`") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path} is not UTF-8 text; rerun `{produced_by}`") from None
    except OSError as err:
        raise PipelineError(f"{path} cannot be read ({err.strerror}); check its permissions") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} is not a YAML mapping; rerun `{produced_by}`")
    return data


@contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for building `path` into the cache: the processes of a multi-process run (or
    several runs sharing a cache) build it once, the others wait and then find it built. The OS releases the
    lock when its holder dies, so a crashed build never blocks the next."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.build.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
