"""Pull requests against one durable consumer, each answered on an inbox of its own.

JetStream answers a pull request (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``) with up
to ``batch`` messages sent to the request's reply inbox, then, unless the batch was filled,
one status message: ``404 No Messages`` (``no_wait`` and nothing there), ``408 Request
Timeout`` (``no_wait`` once what was there is sent, or ``expires`` has passed) or a ``409``
(leadership change, consumer deleted...). The messages keep their own subject, so only the
subscription tells which request they answer: :class:`Puller` subscribes one inbox per
request, so concurrent fetches of a process never take each other's messages, and a fetch
ends exactly when its request does — nothing stays leased at the server for a request
nobody waits for.

The one exception is a fetch given up early (:meth:`Puller.wake`, or no status within
``GRACE`` because the connection failed): its request becomes an *orphan* whose inbox stays
subscribed until its status arrives (at most ``MAX_POLL + GRACE``), and what it still
receives goes to the **stash**, which the next fetch hands out first (those messages are
leased to this process like any other).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from .jetstream_conn import JetStreamClient

_NS = 1_000_000_000
MAX_POLL = 5.0  # longest server-side wait of one request (a longer fetch sends another)
GRACE = 1.0  # how long past its expiry a request may take to end before it is orphaned


@dataclass(eq=False)
class _Pull:
    want: int
    msgs: list[Msg] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # finished, woken or given up
    finished: bool = False  # the server ended it: a status, or the batch is full
    orphan: bool = False
    sub: Subscription | None = None


class Puller:
    """Fetches for ``consumer`` of ``stream`` through ``client`` (all on the client's loop)."""

    def __init__(self, client: JetStreamClient, stream: str, consumer: str) -> None:
        self.client = client
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.stash: deque[Msg] = deque()
        self.silent = 0  # requests that ended without any answer (a missing consumer?)
        self._active: set[_Pull] = set()  # waiting requests and orphans
        self._tasks: set[asyncio.Task[None]] = set()

    async def fetch(self, n: int, timeout: float, woken: Callable[[], bool]) -> list[Msg]:
        """Up to ``n`` messages, the first within ``timeout`` s; what it has once ``woken()``
        is true (see :meth:`wake`)."""
        out = [self.stash.popleft() for _ in range(min(n, len(self.stash)))]
        if len(out) < n and not woken():
            out += await self._pull(n - len(out), None, woken)
        deadline = time.monotonic() + timeout
        while not out and not woken():
            left = deadline - time.monotonic()
            if left <= 0.001:
                break
            out = await self._pull(1, min(left, MAX_POLL), woken)
            if out and n > 1 and not woken():
                out += await self._pull(n - 1, None, woken)
        return out

    def wake(self) -> None:
        """End every waiting request's wait now (they become orphans). On the loop."""
        for pull in self._active:
            pull.ended.set()

    async def _pull(self, n: int, expires: float | None, woken: Callable[[], bool]) -> list[Msg]:
        """One request: ``no_wait`` when ``expires`` is None, else a wait of that long."""
        nc = self.client.require()
        req: dict[str, Any] = {"batch": n}
        if expires is None:
            req["no_wait"] = True
        else:
            req["expires"] = max(int(expires * _NS), 1_000_000)
        pull = _Pull(n)
        inbox = nc.new_inbox()
        try:
            pull.sub = await nc.subscribe(inbox, cb=partial(self._on_msg, pull))
            self._active.add(pull)
            await nc.publish(self.subject, orjson.dumps(req), reply=inbox)
        except NatsError:
            self._end(pull)
            raise
        if not woken():
            try:
                await asyncio.wait_for(pull.ended.wait(), (expires or 0.0) + GRACE)
            except TimeoutError:
                self.silent += not pull.msgs
        if pull.finished:
            self._end(pull)
        else:
            pull.orphan = True
            self.client.loop.call_later(MAX_POLL + GRACE, self._end, pull)
        msgs, pull.msgs = pull.msgs, []
        return msgs

    async def _on_msg(self, pull: _Pull, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None:
            if status != "100":  # 100: an idle heartbeat
                pull.finished = True
                pull.ended.set()
                if pull.orphan:
                    self._end(pull)
            return
        if pull.orphan:
            self.stash.append(msg)
            return
        pull.msgs.append(msg)
        if len(pull.msgs) >= pull.want:
            pull.finished = True
            pull.ended.set()

    def _end(self, pull: _Pull) -> None:
        """Forget ``pull`` and unsubscribe its inbox (in a task of its own: this may run in
        the subscription's own callback)."""
        self._active.discard(pull)
        sub, pull.sub = pull.sub, None
        if sub is not None:
            task = asyncio.ensure_future(_unsubscribe(sub))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> list[Msg]:
        """Drop every request; return what the stash and orphans held (leased: the caller
        naks it)."""
        left = list(self.stash)
        self.stash.clear()
        for pull in list(self._active):
            left += pull.msgs
            self._end(pull)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        return left


async def _unsubscribe(sub: Subscription) -> None:
    try:
        await sub.unsubscribe()
    except NatsError:  # the connection is gone, and the subscription with it
        pass
