"""How much work goes into one forward+backward pass: the one batch-size policy.

Saliency (noise samples and path points: ``internal_batch_size="auto"``), galleries (units per
pass: ``batch="auto"``) and multi-view renders (crops per pass) all ask :func:`rows_per_pass`,
from the device, the image size and the deepest layer the pass needs:

* **CPU:** the largest activation of one row (one image) up to that layer, times the rows, should
  stay within ``BATCHING["cpu_bytes"]``: beyond it, activations outgrow the caches and a pass
  of 2k rows costs more than two passes of k (measured: ``scripts/bench_batching.py``, numbers in
  docs/PERFORMANCE.md). At least ``BATCHING["cpu_min_rows"]`` rows go in a pass anyway, since a
  pass of one small image leaves the vector units idle.
* **CUDA:** the largest chunk whose activations (the sum over the layers up to that one, times
  ``BATCHING["cuda_overhead"]`` for gradients and workspace) fit ``BATCHING["cuda_fraction"]``
  of the free memory, at most ``BATCHING["max_rows"]``.
* **Out of memory:** :class:`Chunker` (rows) and :class:`Splitter` (groups of units) catch the
  out-of-memory error, halve the chunk and retry it, so a budget that guessed too high costs
  time, never the result.

Chunks are balanced: 64 rows at most 24 a pass go as 22 + 21 + 21, not 24 + 24 + 16.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

from .defaults import BATCHING
from .hooks import LOGITS, probe
from .models import as_vision_model

T = TypeVar("T")

AUTO = "auto"


# ----------------------------------------------------------------------------- out of memory

OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)}
    - {None}
)


def is_oom(error: BaseException) -> bool:
    """Whether ``error`` is an out-of-memory error of any device (CUDA, MPS, the CPU)."""
    if isinstance(error, OOM_ERRORS):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def release(device: torch.device | str | None = None) -> None:
    """Give memory back after an out-of-memory error (the failed pass's tensors are garbage by
    then): collect, and empty the CUDA cache so the next, smaller pass can have it."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- the policy


def _leaves(model, size: tuple[int, int], layers: Sequence[str] | None):
    """The per-row output sizes (elements) of the leaf modules that run up to the deepest of
    ``layers`` (all of them for the logits or no layer), in the model's module order."""
    table = probe(model, size)
    names = [n for n in table if n != LOGITS]
    wanted = [n for n in (layers or []) if n != LOGITS and n in table]
    # a layer ends with its last submodule (named after it in module order)
    last = max(
        (k for k, n in enumerate(names) for w in wanted if n == w or n.startswith(w + ".")),
        default=None,
    )
    if last is None or LOGITS in (layers or [LOGITS]):
        last = len(names) - 1
    out = []
    for k, name in enumerate(names[: last + 1]):
        shape = table[name].shape
        deeper = k + 1 < len(names) and names[k + 1].startswith(name + ".")
        if shape and not deeper:
            out.append(math.prod(shape))
    return out or [3 * size[0] * size[1]]


def row_bytes(model, size, layers=None) -> tuple[int, int]:
    """(largest activation, sum of activations) of one row, in bytes, up to ``layers``."""
    model = as_vision_model(model)
    p = next(model.net.parameters(), None)
    itemsize = p.element_size() if p is not None and p.is_floating_point() else 4
    sizes = _leaves(model, tuple(int(s) for s in size), layers)
    return max(sizes) * itemsize, sum(sizes) * itemsize


def balanced(total: int, most: int) -> int:
    """The chunk size that splits ``total`` rows into equal chunks of at most ``most``."""
    if total <= 0:
        return max(1, most)
    chunks = math.ceil(total / max(1, most))
    return math.ceil(total / chunks)


def rows_per_pass(
    model,
    size: int | Sequence[int],
    layers: Sequence[str] | str | None = None,
    *,
    rows: int | None = None,
    device: torch.device | str | None = None,
) -> int:
    """Rows (images) per forward+backward pass for ``model`` at ``size`` (H, W) through
    ``layers`` (the pass stops after the deepest; None: the whole model), for ``rows`` rows in
    all (the result is balanced over them and at most ``rows``). See the module docstring."""
    model = as_vision_model(model)
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    layers = [layers] if isinstance(layers, str) else list(layers or [])
    dev = torch.device(device) if device is not None else model.device
    largest, total_bytes = row_bytes(model, hw, layers)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        spare = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        budget = BATCHING["cuda_fraction"] * (free + spare)
        most = int(budget // max(1, total_bytes * BATCHING["cuda_overhead"]))
    else:
        most = max(int(BATCHING["cpu_bytes"] // max(1, largest)), BATCHING["cpu_min_rows"])
    most = max(1, min(most, BATCHING["max_rows"]))
    return balanced(rows, min(most, rows)) if rows else most


# ----------------------------------------------------------------------------- chunked work


class Chunker:
    """Work over rows in consecutive chunks of at most ``size`` (with ``balance``, of equal
    size: :func:`balanced`); on out-of-memory, the chunk is halved and retried (the smaller
    size is kept from then on). ``retries`` counts the halvings; ``largest`` is the largest
    chunk that went through."""

    def __init__(self, size: int, device: torch.device | str | None = None, balance: bool = False):
        self.size = max(1, int(size))
        self.device = device
        self.balance = balance
        self.retries = 0
        self.largest = 0

    def shrink(self, error: BaseException, tried: int) -> bool:
        """After ``error`` on a chunk of ``tried`` rows: True if it was out of memory and the
        chunk can be halved (then it is); False to let the error through."""
        if tried <= 1 or not is_oom(error):
            return False
        self.size = max(1, tried // 2)
        self.retries += 1
        return True

    def run(self, total: int, work: Callable[[int, int], T]) -> Iterator[T]:
        """Yield ``work(r0, r1)`` for consecutive ranges covering ``range(total)``. ``work``
        must be safe to call again for the same range after it failed."""
        even = balanced(total, self.size) if self.balance else self.size
        r0 = 0
        while r0 < total:
            r1 = min(total, r0 + min(even, self.size))
            try:
                out = work(r0, r1)
            except Exception as e:  # noqa: BLE001 - re-raised unless out of memory
                if not self.shrink(e, r1 - r0):
                    raise
                failed = True
            else:
                failed = False
            if failed:  # outside the except block, so the failed pass's tensors are freed
                release(self.device)
                continue
            self.largest = max(self.largest, r1 - r0)
            yield out
            r0 = r1


class Splitter:
    """``work(group)`` over a stream of groups (a gallery's batches of units): a group that
    runs out of memory is halved, and halved again as needed; the later groups are then cut to
    the size that fitted. ``cap`` is that size (None until a group was split)."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.cap: int | None = None

    def __call__(self, work: Callable[[list], list], items: Sequence) -> list:
        items = list(items)
        if self.cap is not None and len(items) > self.cap:
            parts = [items[i : i + self.cap] for i in range(0, len(items), self.cap)]
            return [r for part in parts for r in self(work, part)]
        try:
            return work(items)
        except Exception as e:  # noqa: BLE001 - re-raised unless out of memory
            if len(items) <= 1 or not is_oom(e):
                raise
        release(self.device)  # outside the except block: the failed pass's tensors are freed
        half = (len(items) + 1) // 2
        self.cap = half if self.cap is None else min(self.cap, half)
        return self(work, items[:half]) + self(work, items[half:])


__all__ = [
    "AUTO",
    "Chunker",
    "Splitter",
    "balanced",
    "is_oom",
    "release",
    "row_bytes",
    "rows_per_pass",
]
