"""Items computed on demand and kept up to a memory budget (least recently used out first).

Training data are made per item from a seed of (run seed, item index): nothing needs the whole
pool in memory, and the items are the same whatever is kept, so the budget only trades memory for
recomputation. Each DataLoader worker holds a cache of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np


def nbytes(item: Any) -> int:
    """Bytes held by the arrays in ``item`` (nested tuples, lists and dicts of arrays)."""
    if isinstance(item, np.ndarray):
        return item.nbytes
    if isinstance(item, dict):
        return sum(nbytes(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(nbytes(v) for v in item)
    if hasattr(item, "__dict__"):
        return nbytes(vars(item))
    return 0


class MemoryCache:
    """``get(key, make)`` returns ``make()``'s item, kept while the items kept hold at most ``mb`` MiB.

    ``mb=None`` keeps everything; ``mb=0`` keeps nothing. An item larger than the budget is not kept.
    """

    def __init__(self, mb: float | None = None):
        self.budget = None if mb is None else float(mb) * 2**20
        self.items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self.held = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.items)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            self.hits += 1
            return self.items[key][0]
        self.misses += 1
        item = make()
        size = nbytes(item)
        if self.budget is None or size <= self.budget:
            self.items[key] = (item, size)
            self.held += size
            while self.budget is not None and self.held > self.budget:
                _, (_, s) = self.items.popitem(last=False)
                self.held -= s
        return item

    def __getstate__(self) -> dict:  # a copy (e.g. to a spawned worker) starts empty
        return {**self.__dict__, "items": OrderedDict(), "held": 0}
