"""Answers computed once per key in each process: a small LRU whose keys name the layer versions
(app/tiles/versions.py) and the parameters an answer depends on, so that a write (which moves a
version) makes the next request compute afresh and nothing is ever invalidated by hand.

Used by the hot-spot tiles (the Gi* grid, app/tiles/hotspots.py) and the cross-boundary table
(app/analysis/adjacency.py). Per process, not shared: several API processes each compute an
answer once per version (docs/decisions.md, "One cache keyed by version").
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class VersionedCache(Generic[T]):
    """A small LRU of computed values for one process; one computation per key at a time
    (concurrent requests for the same key wait for the first and share its value)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: OrderedDict[Hashable, T] = OrderedDict()
        self.locks: dict[Hashable, asyncio.Lock] = {}

    def peek(self, key: Hashable) -> T | None:
        """The value kept for `key`, if any (marked as recently used)."""
        if key in self.values:
            self.values.move_to_end(key)
            return self.values[key]
        return None

    async def get(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """The value for `key`, made with `make()` when missing (an exception is not kept)."""
        if key in self.values:
            self.values.move_to_end(key)
            return self.values[key]
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self.values:
                self.values[key] = await make()
                while len(self.values) > self.size:
                    old, _ = self.values.popitem(last=False)
                    self.locks.pop(old, None)
        return self.values[key]
