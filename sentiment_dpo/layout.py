"""The run directory's layout: every path a stage, the pipeline or a sweep writes in a run directory, relative to
it. The one home for these names (docs/stages.md draws the tree)."""

from __future__ import annotations

from pathlib import Path

# stage 1 (the starting policy's scored samples) and stage 2 (the pairs), each with its resolved config
GENERATIONS = Path("data/generations.jsonl")
GENERATION_CONFIG = Path("data/generations.config.yaml")
PAIRS = Path("data/pairs.jsonl")
PAIRS_CONFIG = Path("data/pairs.config.yaml")


def model_dir(loss: str) -> Path:
    """Stage 3's trained policy: a from_pretrained folder with TRAINING_CONFIG, the training log and a model card."""
    return Path("models") / loss


def results_dir(loss: str) -> Path:
    """Stage 4's results for one method: METRICS, SAMPLES, METRICS_CONFIG and the plots."""
    return Path("results") / loss


TRAINING_CONFIG = "training.config.yaml"
METRICS = "metrics.json"
METRICS_CONFIG = "metrics.config.yaml"
SAMPLES = "samples.jsonl"
FRONTIER_PLOT = "frontier.png"
# The reference's many samples for the ceiling, with the record of what drew them: in REFERENCE_RESULTS (stage 4)
# or SWEEP_REFERENCE (a sweep).
CEILING_SAMPLES = "ceiling_samples.jsonl"
CEILING_RECORD = "ceiling_samples.config.yaml"
REFERENCE_RESULTS = Path("results/reference")

# the pipeline
SUMMARY = "SUMMARY.md"
TIMINGS = "timings.json"

# a sweep: its resolved config, one folder per cell (CELL_RECORD written last marks it finished), the reference's
# metrics and ceiling samples, the report
SWEEP_CONFIG = "sweep.config.yaml"
SWEEP_CELLS = "cells"
CELL_RECORD = "cell.json"
SWEEP_REFERENCE = "reference"
SWEEP_REPORT = "report.md"
