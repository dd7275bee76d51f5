"""The reference's many samples per held-out prompt that the ceiling is estimated from: drawn and scored once per
content (the weights of the reference, reward and judge, the prompts, the sampling settings, N), kept in the user
cache for every run directory and copied into each run's reference folder."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import math
from pathlib import Path
from typing import Any

from .. import files, layout
from ..cache_keys import cache_key, computed_with
from ..embedded.corpus import cache_dir
from .ceiling import (GAIN_SHARE_DEFINITION, KL_OVERHEAD_DEFINITION, CeilingPoint, best_of_n_curve, gain_share,
                      gain_share_text, kl_overhead, optimum_curve, overhead_text, trusted_kl)
from ..distributed import is_main_process
from ..embedded.default_models import CEILING_DIR
from ..errors import PipelineError
from ..generation import OWN_DISTRIBUTION_TEMPERATURE
from .evaluator import Evaluator
from .metrics import measurable_drift
from ..models import content_digest, scorer_digest
from ..prompts import prompts_digest

logger = logging.getLogger(__name__)

# the package's copy (embedded.default_models.CEILING_DIR) is compressed
SHIPPED_SAMPLES_FILE = layout.CEILING_SAMPLES + ".gz"


def of_run(run_dir: Path) -> Path:
    """The ceiling samples a run directory holds: stage 4's (results/reference/) or a sweep's (reference/)."""
    for folder in (run_dir / layout.REFERENCE_RESULTS, run_dir / layout.SWEEP_REFERENCE):
        if (folder / layout.CEILING_SAMPLES).exists():
            return folder / layout.CEILING_SAMPLES
    raise PipelineError(f"{run_dir} has no ceiling samples; run `python3 calculate_metrics.py sigmoid --run-dir "
                        f"{run_dir}` first, or pass --held-out FILE")


def sampling_record(evaluator: Evaluator, samples_per_prompt: int) -> dict[str, Any]:
    """Everything that determines the samples and their scores, by content: the weights of the reference, the
    reward and the judge, the prompts themselves, the sampling settings and N. `key` names the cache entry and adds
    the libraries and kernels that compute them (the same weights sample other bytes on other kernels)."""
    s = evaluator.settings
    judge = evaluator.judge
    record = {"reference": evaluator.reference.spec, "reward": evaluator.reward.spec,
              "judge": judge.spec if judge is not None else None,
              "reference_sha256": content_digest(evaluator.reference),
              "reward_sha256": scorer_digest(evaluator.reward),
              "reward_positive_index": evaluator.reward.positive,
              "judge_sha256": scorer_digest(judge) if judge is not None else None,
              "judge_positive_index": judge.positive if judge is not None else None,
              "prompts_sha256": prompts_digest(s.prompts), "num_prompts": len(s.prompts),
              "samples_per_prompt": samples_per_prompt, "max_new_tokens": s.max_new_tokens,
              "temperature": OWN_DISTRIBUTION_TEMPERATURE, "batch_size": s.batch_size, "seed": s.seed}
    # the names are what a reader sees; the content is what the samples depend on
    keyed = {k: v for k, v in record.items() if k not in ("reference", "reward", "judge")}
    return {"key": cache_key("ceiling", keyed)} | record | {"computed_with": computed_with()}


def cache_folder(key: str) -> Path:
    """The user-cache entry of one ceiling (shared by every run directory with the same content)."""
    return cache_dir() / "ceiling" / key


def _holds(folder: Path, key: str, samples_file: str = layout.CEILING_SAMPLES) -> bool:
    """Whether `folder` holds samples and a record for `key`."""
    return ((folder / samples_file).exists() and (folder / layout.CEILING_RECORD).exists()
            and files.read_yaml(folder / layout.CEILING_RECORD, "python3 calculate_metrics.py").get("key") == key)


def _stored(folder: Path, key: str, samples_file: str = layout.CEILING_SAMPLES) -> list[dict[str, Any]] | None:
    """The rows `folder` holds for `key`, or None."""
    if not _holds(folder, key, samples_file):
        return None
    return files.read_jsonl(folder / samples_file, ("prompt_index", "reward"),
                         "python3 calculate_metrics.py")


def load_or_sample(folder: Path, evaluator: Evaluator, samples_per_prompt: int) -> list[dict[str, Any]]:
    """`samples_per_prompt` scored samples of the reference per held-out prompt: from `folder` (the run's copy), the
    user cache or the package's copy of the default run's when they were made from the same content, else drawn
    now; the main process writes them to the run's folder and the cache, with their prompts, so the run directory
    stays whole and the next run directory reuses them."""
    record = sampling_record(evaluator, samples_per_prompt)
    rows = _stored(folder, record["key"])
    if rows is not None:
        return rows
    cached = cache_folder(record["key"])
    provenance = {**files.computed_by(), "samples_from": "drawn"}
    sources = ((cached, layout.CEILING_SAMPLES, "cache"), (CEILING_DIR, SHIPPED_SAMPLES_FILE, "package"))
    for source, samples_file, where in sources:
        rows = _stored(source, record["key"], samples_file)
        if rows is not None:
            # the libraries that drew them, not today's
            stored = files.read_yaml(source / layout.CEILING_RECORD, "python3 calculate_metrics.py")
            provenance = stored.get("provenance", {}) | {"samples_from": where}
            logger.info("the ceiling's %d reference samples come from the %s (%s): same reference, reward, judge, "
                        "prompts and sampling, by content", len(rows), where, source)
            break
    else:
        rows = draw(evaluator, samples_per_prompt)
    if is_main_process():
        full = record | {"prompts": evaluator.settings.prompts, "provenance": provenance}
        with files.build_lock(cached):  # another run sharing the cache may be writing the same entry
            if not _holds(cached, record["key"]):
                _write(cached, rows, full)
        _write(folder, rows, full)
    return rows


def draw(evaluator: Evaluator, samples_per_prompt: int) -> list[dict[str, Any]]:
    """The reference's `samples_per_prompt` pure samples per held-out prompt, each scored by the reward and judge."""
    logger.info("sampling the reference %d times on each of %d held-out prompts for the ceiling (once for these "
                "models and prompts)", samples_per_prompt, len(evaluator.settings.prompts))
    ref = evaluator.reference
    samples = evaluator.sample(ref.model, ref.tokenizer, samples_per_prompt, desc="ceiling samples")
    scores = evaluator.score(samples, "ceiling samples")
    return [{"prompt_index": x.prompt_index, "completion": x.completion,
             **{name: values[k] for name, values in scores.items()}} for k, x in enumerate(samples)]


def ship(evaluator: Evaluator, rows: list[dict[str, Any]], folder: Path = CEILING_DIR) -> None:
    """Write `rows` (drawn by `draw` with `evaluator`) as the package's ceiling: compressed, with a record whose key
    is the content key, so a run is served them only where its models, prompts and settings are the same."""
    record = sampling_record(evaluator, len(rows) // len(evaluator.settings.prompts))
    record |= {"prompts": evaluator.settings.prompts,
               "provenance": {**files.computed_by(), "samples_from": "drawn"}}
    folder.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same rows give the same bytes
    with open(folder / SHIPPED_SAMPLES_FILE, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())
    files.write_yaml(folder / layout.CEILING_RECORD, record)


def _write(folder: Path, rows: list[dict[str, Any]], record: dict[str, Any]) -> None:
    """The samples, then their record: a record never names samples that are not there."""
    files.write_jsonl(folder / layout.CEILING_SAMPLES, rows)
    files.write_yaml(folder / layout.CEILING_RECORD, record)


def per_prompt_rewards(rows: list[dict[str, Any]]) -> list[list[float]]:
    """Each held-out prompt's ceiling-sample rewards, prompts in index order."""
    return _per_prompt(rows, "reward")


def _per_prompt(rows: list[dict[str, Any]], column: str) -> list[list[float]]:
    groups: dict[int, list[float]] = {}
    for row in rows:
        groups.setdefault(row["prompt_index"], []).append(row[column])
    return [groups[k] for k in sorted(groups)]


def curves(rows: list[dict[str, Any]], seed: int = 0) -> tuple[list[CeilingPoint], list[CeilingPoint]]:
    """(the KL-regularised optimum, best-of-n for n = 1..N) from the cached rows, with the p_positive of a
    classifier reward and the judge's of a classifier judge (a function's values are not probabilities: the
    curves leave them out)."""
    judge = _per_prompt(rows, "judge_p_positive") if "judge_p_positive" in rows[0] else None
    rewards = _per_prompt(rows, "reward")
    p_positive = _per_prompt(rows, "p_positive") if "p_positive" in rows[0] else None
    return (optimum_curve(rewards, p_positive, judge, seed=seed),
            best_of_n_curve(rewards, p_positive, judge, seed=seed))


def _n(point: CeilingPoint) -> int:
    return int(point.label.removeprefix("n="))


def powers_of_two(points: list[CeilingPoint]) -> list[CeilingPoint]:
    """Best-of-n at n = 1, 2, 4, ... and N: the points worth a table row or a marker."""
    return [p for p in points if _n(p) & (_n(p) - 1) == 0 or p is points[-1]]


def summary(optimum: list[CeilingPoint], best_of_n: list[CeilingPoint]) -> dict[str, Any]:
    """The ceiling as a JSON block: every optimum point and best-of-n at powers of two."""
    return {"optimum": [dataclasses.asdict(p) for p in optimum],
            "best_of_n": [dataclasses.asdict(p) for p in powers_of_two(best_of_n)],
            "samples_per_prompt": len(best_of_n),
            "note": "optimum: pi* ∝ pi_ref·exp(r/β) by self-normalised importance weights over the reference's "
                    "samples (trusted: KL ≤ ½·log N); best-of-n: exact over all n-subsets, KL = log n − (n−1)/n "
                    "is an upper bound"}


def points_from_summary(block: dict[str, Any]) -> tuple[list[CeilingPoint], list[CeilingPoint]]:
    def point(p: dict[str, Any]) -> CeilingPoint:
        return CeilingPoint(**(p | {"reward_interval": tuple(p["reward_interval"])}))

    return [point(p) for p in block["optimum"]], [point(p) for p in block["best_of_n"]]


NO_DRIFT = "no measurable drift"


def against_ceiling(optimum: list[CeilingPoint], kl: float, reward: float,
                    kl_standard_error: float = 0.0) -> dict[str, Any]:
    """A trained policy's (KL, mean reward) against the optimum: `kl_overhead` and `ceiling_gain_share` (each a
    number, or null where undefined or outside the trusted range) and their texts. A KL within one standard error
    of 0 prices nothing: both are null, "no measurable drift" (never a negative overhead)."""
    if not measurable_drift(kl, kl_standard_error):
        return {"kl_overhead": None, "kl_overhead_text": NO_DRIFT, "ceiling_gain_share": None,
                "ceiling_gain_share_text": NO_DRIFT}
    overhead, share = kl_overhead(optimum, kl, reward), gain_share(optimum, kl, reward)

    def number(value: float | None) -> float | None:
        return None if value is None or math.isnan(value) else value

    return {"kl_overhead": number(overhead), "kl_overhead_text": overhead_text(overhead),
            "ceiling_gain_share": number(share), "ceiling_gain_share_text": gain_share_text(share)}


def markdown_lines(optimum: list[CeilingPoint], best_of_n: list[CeilingPoint]) -> list[str]:
    """The ceiling section: the trusted optimum points and best-of-n at powers of two."""
    judge = optimum[0].judge_p_positive is not None
    probability = optimum[0].p_positive is not None  # a reward function has none
    size = _n(best_of_n[-1])
    lines = ["## The ceiling", "",
             f"From {size} pure samples of the reference on each held-out prompt, each scored once. **KL-regularised "
             "optimum** π* ∝ π_ref·exp(r/β): the policy that maximises E[r] − β·KL, estimated by self-normalised "
             "importance weights within each prompt (reward ± its 95% bootstrap interval over prompts); the "
             f"estimate cannot exceed log {size} = {math.log(size):.2f} nats, so only points up to half of that are "
             "trusted and drawn solid. **Best-of-n**: the expected best of n samples, exact over all n-subsets; its "
             "KL, log n − (n−1)/n, is an upper bound. **KL overhead** (in the tables of trained policies) = "
             f"{KL_OVERHEAD_DEFINITION}. **Share of the ceiling's gain** = {GAIN_SHARE_DEFINITION}; it needs the "
             f"optimum trusted out to the policy's KL ({trusted_kl(size):.2f} nats here; more samples per prompt "
             "widen it).", "",
             "| ceiling | KL (nats) | reward |" + (" p_positive |" if probability else "")
             + (" judge p_positive |" if judge else ""),
             "|---|---|---|" + ("---|" if probability else "") + ("---|" if judge else "")]
    for p in [q for q in optimum if q.trusted] + powers_of_two(best_of_n)[1:]:
        name = f"optimum {p.label}" if p.label.startswith("β") else f"best-of-{_n(p)}"
        kl = f"{p.kl:.2f}" if p.label.startswith("β") else f"≤ {p.kl:.2f}"
        lines.append(f"| {name} | {kl} | {p.reward:.2f} [{p.reward_interval[0]:.2f}, {p.reward_interval[1]:.2f}] |"
                     + (f" {p.p_positive:.3f} |" if probability else "")
                     + (f" {p.judge_p_positive:.3f} |" if judge else ""))
    return lines + [""]
