"""Evaluating a policy while it trains: `CurveCallback` hands the model to the one `evaluator.Evaluator` every N
optimizer steps, so each training traces a curve of (KL, reward, judge, diversity) points."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback


class CurveCallback(TrainerCallback):
    """Calls `on_checkpoint(model, step)` every `every` optimizer steps and after the last one."""

    def __init__(self, on_checkpoint: Callable[[Any, int], None], every: int):
        self.on_checkpoint, self.every = on_checkpoint, every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.on_checkpoint(model, state.global_step)
