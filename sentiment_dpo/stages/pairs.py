"""Stage 2: winner/loser preference pairs from scored samples.

All strategies pair samples of the same prompt, because a preference loss compares two completions
of one context. With unconditional (BOS-only) generation every sample shares the empty prompt, so
'random' is then the original experiment's random pairing.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from .. import files, layout
from ..config import PairsConfig, config_to_dict
from ..errors import PipelineError

logger = logging.getLogger(__name__)

GENERATION_COLUMNS = ("prompt", "completion", "reward", "p_positive")
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "chosen_reward", "rejected_reward")


def is_finite_number(value: Any) -> bool:
    # json reads NaN and Infinity, and a bool is an int to Python: none of them is a score
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_generation_row(row: dict[str, Any], path: Path, line_no: int) -> None:
    """One line naming the field of a generations row that cannot be what stage 1 wrote."""
    def bad(problem: str) -> PipelineError:
        return PipelineError(f"{path} line {line_no}: {problem}; rerun `python3 text_generation.py`")

    if not is_finite_number(row["reward"]):
        raise bad(f"reward must be a finite number, got {row['reward']!r}")
    p = row["p_positive"]  # None: the reward is a function, which gives no probability
    if p is not None and (not is_finite_number(p) or not 0 <= p <= 1):
        raise bad(f"p_positive must be a probability in [0, 1] (or null), got {p!r}")
    if not isinstance(row["completion"], str) or not isinstance(row["prompt"], str):
        raise bad("prompt and completion must be strings")
    ids = row.get("completion_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                                               and t >= 0 for t in ids)):
        raise bad("completion_ids must be a list of token ids")


def check_ids_match_texts(rows: list[dict[str, Any]], tokenizer, path: Path, fields: tuple[tuple[str, str], ...],
                          produced_by: str) -> None:
    """Training reads the token ids, a person the texts: refuse a row whose `ids` field does not decode to its
    `text` field (a text edited, emptied or lengthened while the ids were kept), naming the line. Stage 1 wrote each
    text as the decoding of its ids without special tokens."""
    for ids_field, text_field in fields:
        indexed = [(k, row) for k, row in enumerate(rows) if ids_field in row]
        decoded = tokenizer.batch_decode([row[ids_field] for _, row in indexed], skip_special_tokens=True)
        for (k, row), text in zip(indexed, decoded):
            if text != row[text_field]:
                raise PipelineError(f"{path} line {k + 1}: {ids_field} decode to {text[:40]!r}, not to its "
                                    f"{text_field} text {row[text_field][:40]!r}; restore the line or rerun "
                                    f"`{produced_by}`")


def _policy_tokenizer(run_dir: Path) -> Any | None:
    """The tokenizer of the policy stage 1 recorded (None without a record: hand-made generations)."""
    record = run_dir / layout.GENERATION_CONFIG
    if not record.exists():
        return None
    from transformers import AutoTokenizer

    from ..models import resolve_source

    return AutoTokenizer.from_pretrained(resolve_source(files.read_yaml(record, "python3 text_generation.py")["policy"],
                                                        "policy"))


def candidate_pairs(rows: list[dict[str, Any]], strategy: str, margin: float) -> list[tuple[int, int]]:
    """All admissible (winner, loser) row-index pairs under `strategy`, in a deterministic order.

    Two samples qualify only if they share a prompt, differ in text and differ in reward (a tie has no winner).
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row["prompt"]].append(i)
    out = []
    for members in groups.values():
        if strategy == "best_worst":
            best = max(members, key=lambda i: rows[i]["reward"])
            worst = min(members, key=lambda i: rows[i]["reward"])
            if rows[best]["reward"] > rows[worst]["reward"] and rows[best]["completion"] != rows[worst]["completion"]:
                out.append((best, worst))
            continue
        for i, j in itertools.combinations(members, 2):
            gap = rows[i]["reward"] - rows[j]["reward"]
            if gap == 0 or rows[i]["completion"] == rows[j]["completion"]:
                continue
            if strategy == "margin" and abs(gap) < margin:
                continue
            out.append((i, j) if gap > 0 else (j, i))
    return out


def build_pairs(rows: list[dict[str, Any]], num_pairs: int, strategy: str, margin: float,
                seed: int) -> list[dict[str, Any]]:
    """`num_pairs` preference pairs drawn without replacement from the admissible ones (seeded); 0: all of them."""
    candidates = candidate_pairs(rows, strategy, margin)
    if not candidates:
        prompts = [row["prompt"] for row in rows]
        if len(set(prompts)) == len(prompts):  # one sample per prompt: nothing to compare
            raise PipelineError(f"the {len(rows)} texts allow no pair: each prompt has one sample, and a pair needs "
                                "two of one prompt; rerun `python3 text_generation.py --samples-per-prompt 8`")
        raise PipelineError(f"the {len(rows)} texts allow no pair with --strategy {strategy} (no two different "
                            "samples of one prompt differ enough in reward); use "
                            + ("a lower --margin or " if strategy == "margin" else "") + "--strategy random")
    if num_pairs > len(candidates):
        hint = " or a lower --margin" if strategy == "margin" else ""
        raise PipelineError(
            f"asked for {num_pairs} pairs but the {len(rows)} texts allow only {len(candidates)} with --strategy "
            f"{strategy}; ask for --num-pairs {len(candidates)}{hint}, or sample more texts per prompt"
        )
    chosen = random.Random(seed).sample(candidates, num_pairs or len(candidates))
    return [{
        "prompt": rows[winner]["prompt"],
        "chosen": rows[winner]["completion"],
        "rejected": rows[loser]["completion"],
        "chosen_reward": rows[winner]["reward"],
        "rejected_reward": rows[loser]["reward"],
        "chosen_p_positive": rows[winner]["p_positive"],
        "rejected_p_positive": rows[loser]["p_positive"],
        # the exact sampled tokens, which training uses (EOS only where one was sampled)
        **({"chosen_ids": rows[winner]["completion_ids"], "rejected_ids": rows[loser]["completion_ids"]}
           if "completion_ids" in rows[winner] else {}),
    } for winner, loser in chosen]


def run(config: PairsConfig) -> list[dict[str, Any]]:
    """Read data/generations.jsonl, write data/pairs.jsonl and its resolved config; return the pairs."""
    run_dir = Path(config.run_dir)
    rows = files.read_jsonl(run_dir / layout.GENERATIONS, GENERATION_COLUMNS, "python3 text_generation.py")
    for line_no, row in enumerate(rows, start=1):
        check_generation_row(row, run_dir / layout.GENERATIONS, line_no)
    if any("completion_ids" in row for row in rows):
        tokenizer = _policy_tokenizer(run_dir)
        if tokenizer is not None:
            check_ids_match_texts(rows, tokenizer, run_dir / layout.GENERATIONS, (("completion_ids", "completion"),),
                                  "python3 text_generation.py")
    pairs = build_pairs(rows, config.num_pairs, config.strategy, config.margin, config.seed)
    files.write_jsonl(run_dir / layout.PAIRS, pairs)
    files.write_yaml(run_dir / layout.PAIRS_CONFIG, config_to_dict(config) | {
        "provenance": {"generations": str(layout.GENERATIONS),
                       "generations_sha256": files.sha256_of(run_dir / layout.GENERATIONS),
                       "policy": rows[0].get("policy"),
                       "reward_model": rows[0].get("reward_model")}})
    gap = sum(p["chosen_reward"] - p["rejected_reward"] for p in pairs) / len(pairs)
    logger.info("wrote %d pairs to %s (mean reward gap %.2f)", len(pairs), run_dir / layout.PAIRS, gap)
    return pairs
