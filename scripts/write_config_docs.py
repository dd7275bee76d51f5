#!/usr/bin/env python3
"""Write docs/configuration.md from the stage and pipeline configs, so the page cannot drift from the options.

    python3 scripts/write_config_docs.py          # rewrite the page
    python3 scripts/write_config_docs.py --check  # exit 1 if the page is not current (the tests run this check)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"


def _type_name(hint: typing.Any) -> str:
    """`float | None` as `float`: an optional option's default reads "unset"."""
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "").replace(" | None", "")


def _default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return "unset" if value is None else f"`{value}`"


def option_table(config_cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    hints = typing.get_type_hints(config_cls)
    lines = ["| option | type | default | what it does |", "|---|---|---|---|"]
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        text = " ".join(f.metadata.get("help", "").split()).replace("|", "\\|")
        lines.append(f"| `--{f.name.replace('_', '-')}` | {_type_name(hints[f.name])} | {_default(f)} | {text} |")
    return lines


def page() -> str:
    from sentiment_dpo.config import CommonConfig, GenerationConfig, MetricsConfig, PairsConfig, TrainingConfig
    from sentiment_dpo.methods.registry import READ_BY
    from sentiment_dpo.experiments.sweep import SweepConfig

    common = tuple(f.name for f in dataclasses.fields(CommonConfig))
    lines = ["# Configuration", "",
             "Every option of every stage, generated from the config dataclasses by "
             "`python3 scripts/write_config_docs.py` (a test fails when this page is not current). Each option is a "
             "flag of its script and a key of its `--config FILE.yaml` (dashes or underscores); flags win over the "
             "file, the file over the defaults. \"unset\" means the default depends on the method, the recipe or "
             "the preset (see the option's text); the resolved value is recorded in the stage's "
             "`*.config.yaml`.", "",
             "## Every stage", "", *option_table(CommonConfig), ""]
    for title, cls in (("Stage 1: `text_generation.py`", GenerationConfig), ("Stage 2: `prepare_dataset.py`",
                                                                             PairsConfig),
                       ("Stage 3: `main.py LOSS`", TrainingConfig), ("Stage 4: `calculate_metrics.py LOSS`",
                                                                      MetricsConfig)):
        lines += [f"## {title}", "", *option_table(cls, skip=common), ""]
    lines += ["### Options only some methods read", "",
              "An option set for a method that does not read it is refused (one line, exit 2); a pipeline or sweep "
              "gives each method the options it reads and refuses one that none of its methods reads.", "",
              "| option | read by | why not the others |", "|---|---|---|"]
    for name, (methods, why) in READ_BY.items():
        lines.append(f"| `--{name.replace('_', '-')}` | {', '.join(methods)} | {why} |")
    lines += ["", "## `sweep.py`", "",
              "Every stage option above (stage 1's batch size is `--eval-batch-size`; stage 4's `--judge` and "
              "`--ceiling-samples`) with the stage's default; each training option takes several values, one more "
              "grid axis. Its own options:", "",
              *option_table(SweepConfig, skip=tuple(f.name for cls in (GenerationConfig, PairsConfig, TrainingConfig,
                                                                      MetricsConfig) for f in dataclasses.fields(cls))),
              "", "## `run_pipeline.py`", "",
              "`--run-dir`, `--losses`, `--seed`, `--preset`, `--recipe`, and `--config FILE.yaml` with those keys "
              "plus one mapping per stage (`generation`, `pairs`, `training`, `metrics`) of the options above.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not current")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        current = PAGE.exists() and PAGE.read_text(encoding="utf-8") == text
        print("docs/configuration.md is current" if current else
              "docs/configuration.md is stale: run python3 scripts/write_config_docs.py")
        return 0 if current else 1
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
