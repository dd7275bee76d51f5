"""Reading a user's prompt source: the records (texts) prompts are made from, split into training and held-out.

A source is a `.txt` file (one record a line), a `.jsonl` / `.csv` / `.parquet` table, a folder written by
`datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or a hub dataset id (`datasets.load_dataset`, which
honours `HF_HUB_OFFLINE` / `HF_DATASETS_OFFLINE`). What a record becomes as a prompt is `prompts.py`'s job.

The held-out records come from the source's held-out split where it has one (`test` unless named), otherwise
from a seeded share of the records: the two sets of records never overlap.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PipelineError

FILE_KINDS = {".txt": "text", ".jsonl": "table", ".csv": "table", ".parquet": "table"}
DEFAULT_COLUMN = "text"
DEFAULT_HELDOUT_SPLIT = "test"
DEFAULT_HELDOUT_FRACTION = 0.2
KINDS_HELP = "a .txt, .jsonl, .csv or .parquet file, a folder written by save_to_disk, or a hub dataset id"


@dataclass(frozen=True)
class SourceSpec:
    """Where prompts come from and how the held-out records are kept apart (the recorded stage-1 settings)."""
    source: str
    column: str | None = None  # None: the default column of a table; a .txt file has none
    heldout_split: str | None = None  # None: `test` where the source has it
    heldout_fraction: float | None = None  # None: DEFAULT_HELDOUT_FRACTION when no split is held out
    seed: int = 0  # draws the held-out share of a source without a held-out split


@dataclass(frozen=True)
class Records:
    """A source's records (None where a record is not text), and what a provenance record says about them."""
    train: list[str | None]
    heldout: list[str | None]
    provenance: dict[str, Any]


def absolute_source(source: str | None) -> str | None:
    """A local `--prompts` path as an absolute one (later stages read the source again from stage 1's record,
    started from wherever the user is); a hub id or None as it is."""
    if source is not None and Path(source).expanduser().exists():
        return str(Path(source).expanduser().resolve())
    return source


def kind_of(source: str) -> str:
    """'text', 'table', 'dataset' (a save_to_disk folder) or 'hub'; a missing local path is refused."""
    path = Path(source)
    if path.is_dir():
        return "dataset"
    if path.is_file():
        if path.suffix.lower() not in FILE_KINDS:
            raise PipelineError(f"--prompts {source}: cannot read {path.suffix or 'a file without a suffix'}; pass "
                                f"{KINDS_HELP}")
        return FILE_KINDS[path.suffix.lower()]
    if path.suffix.lower() in FILE_KINDS or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise PipelineError(f"--prompts {source} not found; pass an existing file or folder ({KINDS_HELP})")
    return "hub"


def load_records(spec: SourceSpec) -> Records:
    """The records of `spec.source`, its training and held-out parts, with their provenance."""
    kind = kind_of(spec.source)
    if kind in ("text", "table"):
        if kind == "text" and spec.column is not None:
            raise PipelineError(f"--prompt-column is for tables; --prompts {spec.source} is a text file, one "
                                "record a line: remove --prompt-column")
        splits = {"all": _read_file(Path(spec.source), kind, spec.column or DEFAULT_COLUMN)}
    else:
        splits = _read_dataset(spec, kind)
    return _split(spec, kind, splits)


def _read_file(path: Path, kind: str, column: str) -> list[str | None]:
    try:
        if kind == "text":
            return [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            rows = []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise PipelineError(f"--prompts {path}: line {number} is not JSON; fix it or remove it") from None
                if not isinstance(row, dict):
                    raise PipelineError(f"--prompts {path}: line {number} is not a JSON object; write one "
                                        f'{{"{column}": ...}} object a line')
                rows.append(row)
            return _column(path, rows, column, sorted({k for row in rows for k in row}))
        if suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader)
                return _column(path, rows, column, list(reader.fieldnames or []))
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises its own kinds for a damaged file
            raise PipelineError(f"--prompts {path} is not a readable parquet file ({err.__class__.__name__}); "
                                "write it again") from None
        if column not in table.column_names:
            _missing_column(path, column, table.column_names)
        return [value if isinstance(value, str) else None for value in table.column(column).to_pylist()]
    except UnicodeDecodeError:
        raise PipelineError(f"--prompts {path} is not UTF-8 text; save it as UTF-8") from None


def _column(path: Path, rows: list[dict], column: str, columns: list[str]) -> list[str | None]:
    if columns and column not in columns:  # no columns at all: an empty file, refused as one later
        _missing_column(path, column, columns)
    return [row.get(column) if isinstance(row.get(column), str) else None for row in rows]


def _missing_column(source: Any, column: str, columns: list[str]) -> None:
    raise PipelineError(f"--prompts {source} has no column {column!r} (its columns: {', '.join(columns) or 'none'}); "
                        "pass --prompt-column NAME")


def _read_dataset(spec: SourceSpec, kind: str) -> dict[str, list[str | None]]:
    """The splits of a save_to_disk folder or a hub dataset, as lists of the column's values."""
    import datasets

    try:
        if kind == "dataset":
            loaded = datasets.load_from_disk(spec.source)
        else:
            loaded = datasets.load_dataset(spec.source)
    except FileNotFoundError:
        what = ("is a folder but not one written by save_to_disk" if kind == "dataset" else
                "is not a local path, and no hub dataset of that name could be loaded")
        raise PipelineError(f"--prompts {spec.source} {what}; pass {KINDS_HELP}") from None
    except Exception as err:  # the hub unreachable, offline mode, a damaged folder: datasets' many kinds
        what = "cannot be read as a save_to_disk folder" if kind == "dataset" else \
            "is not a local path, and loading it from the hub failed"
        raise PipelineError(f"--prompts {spec.source} {what} ({err.__class__.__name__}); pass {KINDS_HELP}, or "
                            "check the hub is reachable") from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"all": loaded}
    column = spec.column or DEFAULT_COLUMN
    out = {}
    for name, part in parts.items():
        if column not in part.column_names:
            _missing_column(spec.source, column, part.column_names)
        out[name] = [value if isinstance(value, str) else None for value in part[column]]
    return out


def _split(spec: SourceSpec, kind: str, splits: dict[str, list[str | None]]) -> Records:
    """Training and held-out records: a held-out split where there is one, else a seeded share."""
    if not any(splits.values()):
        raise PipelineError(f"--prompts {spec.source} holds no records; pass a source with one text a record")
    named = [name for name in splits if name != "all"]
    heldout_split = spec.heldout_split
    if heldout_split is not None and heldout_split not in named:
        have = f"its splits: {', '.join(named)}" if named else "it has no splits"
        raise PipelineError(f"--heldout-split {heldout_split}: --prompts {spec.source} has no such split ({have}); "
                            + ("name one of them" if named else "remove --heldout-split (a share of the records "
                                                                "is held out: --heldout-fraction)"))
    if heldout_split is None and DEFAULT_HELDOUT_SPLIT in named:
        heldout_split = DEFAULT_HELDOUT_SPLIT
    if heldout_split is not None and spec.heldout_fraction is not None:
        raise PipelineError(f"--heldout-fraction does nothing here: the split {heldout_split!r} of --prompts "
                            f"{spec.source} is held out; remove --heldout-fraction")
    rest = [name for name in named if name != heldout_split]
    if not named:
        train_split = "all"
    elif "train" in rest:
        train_split = "train"
    elif len(rest) == 1:
        train_split = rest[0]
    else:
        raise PipelineError(f"--prompts {spec.source} has no 'train' split and several others ({', '.join(rest)}): "
                            "save the training records as a 'train' split")
    provenance = {"source": spec.source, "kind": kind, "column": None if kind == "text" else
                  spec.column or DEFAULT_COLUMN, "train_split": None if train_split == "all" else train_split}
    if heldout_split is not None:
        train, heldout = splits[train_split], splits[heldout_split]
        provenance["heldout_split"] = heldout_split
    else:
        train, heldout = _heldout_share(splits[train_split], spec.heldout_fraction or DEFAULT_HELDOUT_FRACTION,
                                        spec.seed)
        provenance["heldout_fraction"] = spec.heldout_fraction or DEFAULT_HELDOUT_FRACTION
    provenance |= {"train_records": len(train), "heldout_records": len(heldout),
                   "records_sha256": records_digest(train, heldout)}
    return Records(train, heldout, provenance)


def _heldout_share(records: list[str | None], fraction: float, seed: int) -> tuple[list, list]:
    """A seeded `fraction` of the records held out (at least one when there are two), the rest for training."""
    count = min(len(records) - 1, max(1, round(len(records) * fraction))) if len(records) > 1 else 0
    heldout = set(random.Random(f"heldout-{seed}").sample(range(len(records)), count))
    return ([r for i, r in enumerate(records) if i not in heldout], [r for i, r in enumerate(records) if i in heldout])


def records_digest(train: list[str | None], heldout: list[str | None]) -> str:
    """One hash of both parts' records in order: a changed source, split or held-out draw changes it."""
    digest = hashlib.sha256()
    for part in (train, heldout):
        for record in part:
            digest.update(json.dumps(record).encode() + b"\n")
        digest.update(b"\x00")
    return digest.hexdigest()
