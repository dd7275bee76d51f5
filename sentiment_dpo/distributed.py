"""Running under `torchrun` / `accelerate launch`: which process this is, and sharding batches across processes.

Batches are always formed the same way as in a single process (same order, same per-batch seed); with N
processes, batch i runs on process i mod N and the results are gathered on every process. A multi-process
run therefore writes exactly the rows a single process writes for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

T = TypeVar("T")


@lru_cache(maxsize=1)
def process_state():
    """accelerate's process state; on a machine without a GPU it must be created with cpu=True, otherwise
    every process launched by torchrun believes it is rank 0 of 1."""
    import torch

    # torch.distributed.nn binds the default process group into its functions' default arguments when first
    # imported; transformers imports it while loading a model, and if that happens after the group exists the
    # group can never be freed and `shutdown` cannot stop its threads. Imported first, the defaults are None.
    import torch.distributed.nn  # noqa: F401
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return process_state().is_main_process


def wait_for_everyone() -> None:
    process_state().wait_for_everyone()


def shutdown(wait: bool = True) -> None:
    """End a multi-process run cleanly: each process waits for the others (unless it is leaving on an error,
    which the others may not share), then destroys its process group. Exiting with the gloo group still alive
    lets its threads be torn down mid-use at interpreter exit, which now and then aborts a process ("terminate
    called without an active exception") and fails a finished run."""
    if process_state.cache_info().currsize == 0:
        return  # never asked for: nothing distributed was set up
    state = process_state()
    if state.num_processes > 1:
        if wait:
            state.wait_for_everyone()
        state.destroy_process_group()


def map_batches(batches: list[T], fn: Callable[[int, T], Any], across_processes: bool = True) -> list[Any]:
    """`[fn(i, batch) for i, batch in enumerate(batches)]`, with the batches shared round-robin across processes
    (unless `across_processes` is False: then this process maps all of them itself)."""
    state = process_state()
    if state.num_processes == 1 or not across_processes:
        return [fn(i, batch) for i, batch in enumerate(batches)]
    from accelerate.utils import gather_object

    mine = {i: fn(i, batch) for i, batch in enumerate(batches) if i % state.num_processes == state.process_index}
    merged: dict[int, Any] = {}
    for part in gather_object([mine]):
        merged.update(part)
    return [merged[i] for i in range(len(batches))]


def map_length_sorted(lengths: list[int], batch_size: int, fn: Callable[[int, list[int]], list[Any]],
                      across_processes: bool = True) -> list[Any]:
    """One result per item: items are batched in order of length (less padding), `fn(i, batch_of_item_indices)`
    returns the batch's results in batch order, and they come back in the items' original order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    out: list[Any] = [None] * len(lengths)
    for batch, values in zip(batches, map_batches(batches, fn, across_processes)):
        for i, value in zip(batch, values):
            out[i] = value
    return out


def on_every_process(value: T) -> T:
    """The main process's `value`, on every process (for a decision one process takes for all)."""
    state = process_state()
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]
