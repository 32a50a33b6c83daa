"""A single-slot mailbox between the camera callback and the inference worker.

Newest frame wins: putting a frame replaces the one still waiting, so however fast the
camera and however slow the model, at most one frame waits and none is ever stale by
more than one inference.
"""
from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestMailbox(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False

    def put(self, item: T) -> bool:
        """Store `item`; True when it replaced (dropped) a waiting one."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> T | None:
        """The waiting item, or None after `timeout` seconds without one."""
        with self._cond:
            if not self._full:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def clear(self) -> bool:
        """Discard the waiting item; True when there was one."""
        with self._cond:
            had = self._full
            self._item, self._full = None, False
            return had
