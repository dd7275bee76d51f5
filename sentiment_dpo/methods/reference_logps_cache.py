"""The reference log-probs of a pair dataset, cached in the user cache by content.

Every pair method trained on the same pairs from the same starting policy scores the same texts with the same frozen
model: the default pipeline's sigmoid and hinge trainings, each point of a sweep, the same trainings in a second run
directory. The pass is about a sixth of a training of the embedded policy (studies/reference_logps_cache at commit
e3d212a), so it is computed once per content and read back after that. The key holds everything its bytes depend on: the
scoring model's weights and architecture, the texts in their order (the pass batches them by length, ties in that
order), the batch size and padding, the head and precision that compute it, the CPU kernels and the library versions. A
model changed in any weight, a bias or an adapter included, gets another key, even where the pass switches that part
off: a needless pass at worst, never a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from .. import files
from ..cache_keys import cache_key, computed_with
from ..embedded.corpus import cache_dir
from ..models import weights_digest

logger = logging.getLogger(__name__)

CACHE_FOLDER = "reference_logps"
LOGPS_FILE = "logps.json"


def reference_record(model: torch.nn.Module, texts: list[tuple[tuple[int, ...], tuple[int, ...]]],
                     batch_size: int, computation: dict[str, Any]) -> dict[str, Any]:
    """What the reference log-probs of `texts` ((prompt ids, completion ids), in pass order) depend on, with `key`
    naming the cache entry. `computation`: the settings of the pass that shape its numbers (padding, head,
    precision, device)."""
    config = getattr(model, "config", None)
    architecture = {k: v for k, v in config.to_dict().items() if k != "_name_or_path"} if config is not None else None
    record = {"weights_sha256": weights_digest(model), "architecture": architecture,
              "texts_sha256": hashlib.sha256(json.dumps(texts).encode()).hexdigest(), "num_texts": len(texts),
              "batch_size": batch_size, **computation}
    return {"key": cache_key("reference_logps", record)} | record | {"computed_with": computed_with()}


def entry(key: str) -> Path:
    return cache_dir() / CACHE_FOLDER / key / LOGPS_FILE


def load(record: dict[str, Any]) -> list[float] | None:
    """The cached log-probs of `record`'s texts, or None where there are none (or the entry is unreadable: it is
    then computed again and replaced)."""
    path = entry(record["key"])
    if not path.exists():
        return None
    try:
        logps = json.loads(path.read_text(encoding="utf-8"))["logps"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("ignoring the unreadable reference log-probs in %s (%s); computing them again", path, err)
        return None
    if not isinstance(logps, list) or len(logps) != record["num_texts"]:
        logger.warning("ignoring %s: it holds %s values for %d texts; computing them again", path,
                       len(logps) if isinstance(logps, list) else "no", record["num_texts"])
        return None
    logger.info("the reference log-probs of %d texts come from the cache (%s): same model, texts and pass, by "
                "content", len(logps), path.parent)
    return logps


def store(record: dict[str, Any], logps: list[float]) -> None:
    """Write `logps` (one per text of `record`) as its cache entry, with the record beside them."""
    path = entry(record["key"])
    with files.build_lock(path.parent):  # another run sharing the cache may be writing the same entry
        files.write_json(path, {"record": record, "logps": logps})
