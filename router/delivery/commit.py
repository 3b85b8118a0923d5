"""What the engine holds for a submitter: a :class:`Share` (one output's part of a submitted
batch) and the :class:`Ticket` that tells the submitter when all its shares are committed.

Inputs that answer their sender only once the events are safe (the SNS input) pass a
callback with the batches; it runs once, on the event loop, when the last share is in its
queue — at once, when a held batch is released, when a cluster acknowledged its publish —
with ``False`` if any share was lost instead (a queue unwritable at shutdown).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

_ORDER = itertools.count()


class Ticket:
    """Counts a submission's shares not yet committed; calls ``done(ok)`` at the last."""

    __slots__ = ("done", "left", "ok")

    def __init__(self, done: Callable[[bool], None]) -> None:
        self.done, self.left, self.ok = done, 1, True  # 1: the submission itself, until sent

    def settle(self, ok: bool = True) -> None:
        self.ok = self.ok and ok
        self.left -= 1
        if self.left == 0:
            self.done(self.ok)


class Share:
    """One output's events of a submission (dicts, or an ``Encoded`` payload list);
    ``order`` increases with every share made, so held shares can keep their order."""

    __slots__ = ("batch", "order", "ticket")

    def __init__(self, batch: Any, ticket: Ticket | None) -> None:
        self.batch, self.ticket, self.order = batch, ticket, next(_ORDER)
        if ticket is not None:
            ticket.left += 1

    def __len__(self) -> int:
        return len(self.batch)

    def settle(self, ok: bool = True) -> None:
        """Committed (or, ``ok=False``, lost): tell the ticket, once."""
        ticket, self.ticket = self.ticket, None
        if ticket is not None:
            ticket.settle(ok)


def put_back(held: deque[Share], share: Share) -> None:
    """Return a share that could not be committed to the held list, ahead of every share
    made after it (several publishes in flight may fail in any order)."""
    for i, other in enumerate(held):
        if other.order > share.order:
            held.insert(i, share)
            return
    held.append(share)
