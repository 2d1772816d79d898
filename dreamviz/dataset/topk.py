"""The streaming state of a dataset-examples run: its memory does not grow with the images.

Per channel it keeps the ``top`` images by the channel's spatial maximum (with the position of
the maximum), and, for the quantile examples, the per-channel maxima of a fixed sample of
``sample`` images: those whose :func:`~dreamviz.dataset.images.sample_key` is smallest, which
are the same images whatever the order of the images or the number of processes.

Order is total, so results do not depend on how the images were split: a higher activation
first, and between equal activations the image that comes first in the sorted file list.
States of disjoint shards merge (:func:`merge`) to exactly the state of one pass over all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

EMPTY = -1


def _take(tensors, order):
    return [t.gather(1, order) for t in tensors]


def best(values, ids, pos, k: int):
    """Per row, the ``k`` best (value, id, pos) columns: highest value first, ties by lowest id
    (an empty slot, id -1 and value -inf, comes last)."""
    values = torch.nan_to_num(values, nan=-float("inf"))
    ranked = torch.where(ids < 0, torch.iinfo(torch.long).max, ids)
    values, ids, pos = _take((values, ids, pos), ranked.argsort(dim=1, stable=True))
    order = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return _take((values, ids, pos), order)


@dataclass
class State:
    """What a run has seen so far (see the module docstring). Tensors are on the CPU:
    ``values``, ``ids``, ``pos``: channels x top; the sample: ``sample_keys``, ``sample_ids``
    (S), ``sample_values``, ``sample_pos`` (S x channels)."""

    channels: list[int]
    top: int
    sample: int
    values: torch.Tensor
    ids: torch.Tensor
    pos: torch.Tensor
    sample_keys: torch.Tensor
    sample_ids: torch.Tensor
    sample_values: torch.Tensor
    sample_pos: torch.Tensor
    read: int = 0  # images read
    batches: int = 0  # batches done (of this process's share)
    skipped: list = field(default_factory=list)  # [image index, why]

    @classmethod
    def new(cls, channels: Sequence[int], top: int, sample: int) -> State:
        c = len(channels)
        empty = torch.zeros(0, dtype=torch.long)
        return cls(
            list(channels),
            int(top),
            int(sample),
            torch.full((c, top), -float("inf")),
            torch.full((c, top), EMPTY, dtype=torch.long),
            torch.full((c, top), EMPTY, dtype=torch.long),
            empty,
            empty.clone(),
            torch.zeros(0, c),
            torch.zeros(0, c, dtype=torch.long),
        )

    def update(self, ids, values, pos, keys) -> None:
        """Add a batch: ``ids`` (N), ``values`` and ``pos`` (N x channels: each channel's
        spatial maximum and its flat position), ``keys`` (N: the images' sample keys)."""
        values, pos = values.detach().float().cpu(), pos.cpu()
        n = len(ids)
        self.values, self.ids, self.pos = best(
            torch.cat([self.values, values.T], 1),
            torch.cat([self.ids, ids.view(1, n).expand(len(self.channels), n)], 1),
            torch.cat([self.pos, pos.T], 1),
            self.top,
        )
        keep = torch.ones(n, dtype=torch.bool)
        if len(self.sample_keys) >= self.sample:
            keep = keys < self.sample_keys.max()
        if keep.any():
            self._add_sample(keys[keep], ids[keep], values[keep], pos[keep])
        self.read += n

    def _add_sample(self, keys, ids, values, pos) -> None:
        keys = torch.cat([self.sample_keys, keys])
        order = keys.argsort()[: self.sample]
        self.sample_keys = keys[order]
        self.sample_ids = torch.cat([self.sample_ids, ids])[order]
        self.sample_values = torch.cat([self.sample_values, values])[order]
        self.sample_pos = torch.cat([self.sample_pos, pos])[order]

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> State:
        return cls(**d)

    def quantile_picks(self, levels: Sequence[float], per: int) -> list[list[tuple]]:
        """Per channel, ``per`` sample images at each quantile level of the channel's maxima
        over the sample: ``(level, id, value, pos)``, highest level first. Images already among
        the channel's top ones are passed over while others are left."""
        out = []
        n = len(self.sample_ids)
        for j in range(len(self.channels)):
            picks: list[tuple] = []
            if n:
                vals = self.sample_values[:, j]
                order = vals.argsort(stable=True).tolist()
                taken = set(self.ids[j].tolist())
                for q in sorted(levels, reverse=True):
                    r = round(q * (n - 1))
                    near = sorted(range(n), key=lambda i, r=r: (abs(i - r), -i))
                    fresh = [i for i in near if int(self.sample_ids[order[i]]) not in taken]
                    for i in (fresh or near)[:per]:
                        row = order[i]
                        image = int(self.sample_ids[row])
                        taken.add(image)
                        picks.append((q, image, float(vals[row]), int(self.sample_pos[row, j])))
            out.append(picks)
        return out


def merge(states: Sequence[State]) -> State:
    """One state from the states of disjoint shards of the images: equal to one pass."""
    first = states[0]
    out = State.new(first.channels, first.top, first.sample)
    out.values, out.ids, out.pos = best(
        torch.cat([s.values for s in states], 1),
        torch.cat([s.ids for s in states], 1),
        torch.cat([s.pos for s in states], 1),
        first.top,
    )
    out._add_sample(
        torch.cat([s.sample_keys for s in states]),
        torch.cat([s.sample_ids for s in states]),
        torch.cat([s.sample_values for s in states]),
        torch.cat([s.sample_pos for s in states]),
    )
    out.read = sum(s.read for s in states)
    out.batches = sum(s.batches for s in states)
    out.skipped = sorted(x for s in states for x in s.skipped)
    return out


__all__ = ["EMPTY", "State", "best", "merge"]
