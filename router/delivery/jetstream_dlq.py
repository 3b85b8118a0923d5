"""JetStreamDeadLetters: the dead-letter store as a replicated stream, cluster-wide.

The same verbs as :class:`~dsrouter.delivery.deadletter.DeadLetters` (``add``, ``outputs``,
``list``, ``get``, ``counts``, ``remove``, ``select``, ``discard``, ``replay``, ``purge``), on the
stream ``S_dlq`` with one subject per output, ``S_dlq.<output>``
(:mod:`~dsrouter.delivery.jetstream_stream`). A dead letter is one message whose body is the
file store's line without its id — ``output``, ``time``, ``reason``, ``attempts``,
``response``, ``event`` — and its ``dlq_id`` is its stream sequence as a decimal string: unique
across the cluster and in time order.

``add`` publishes every letter and waits for JetStream's acknowledgements; if one fails, the
ones already stored are deleted again and the error raised, so the caller keeps the events
queued (:class:`~dsrouter.delivery.deadletter.DeadLetterFull` when the stream is at its
``dlq_max_bytes``). Reading (``list``) goes through a short-lived ephemeral consumer (no
acks, in memory, one replica) that is deleted when the listing ends.
"""

from __future__ import annotations

import base64
import builtins
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from .deadletter import DeadLetterFull, Letter, StoredLetter, _dumps
from .jetstream_conn import ApiError, JetStreamClient, JetStreamError, gather_all
from .jetstream_msgs import ack_numbers, msg_id
from .jetstream_pull import Puller
from .jetstream_stream import Once, dlq_stream, dlq_stream_config, dlq_subject, ensure_stream

Event = dict[str, Any]
Letters = list[StoredLetter]
Names = list[str]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NS = 1_000_000_000
_CHUNK = 500
#: ``publish(output, events, msg_ids) -> bool`` for :meth:`JetStreamDeadLetters.replay`.
Republish = Callable[[str, list[Event], list[str]], bool]


#: Dead letters looked up and deleted together (each is two requests).
_REMOVE_AT_ONCE = 200


def replay_ids(letters: Sequence[StoredLetter]) -> list[str]:
    """Message ids for putting ``letters`` back on the work stream: the event's own id plus
    ``dlq<dlq_id>``, so the replay is never taken for the original publish (still in the
    duplicate window) while a retried replay of the same letter is stored once."""
    return [
        f"{msg_id(s.output, s.event, orjson.dumps(s.event, default=str))}:dlq{s.dlq_id}"
        for s in letters
    ]


class JetStreamDeadLetters:
    """Dead letters of every output in the cluster's dead-letter stream."""

    def __init__(self, client: JetStreamClient) -> None:
        self.client = client
        self.stream = dlq_stream(client.options.stream)
        self.max_bytes = client.options.dlq_max_bytes
        self.refused_full = 0
        self.corrupt_lines = 0  # messages that are not dead letters, skipped by reads
        self._ready = Once()  # the stream, created on first use

    def _call(self, coro: Any, extra: float = 0.0) -> Any:
        return self.client.call(coro, self.client.options.request_timeout * 2 + 1.0 + extra)

    async def _ensure(self) -> None:
        await self._ready.run(self._create)

    async def _create(self) -> None:
        config = dlq_stream_config(self.client, self.client.options.replicas)
        await ensure_stream(self.client, config)

    def subject(self, output: str) -> str:
        """The subject of ``output``'s letters; ValueError unless the name is an identifier."""
        if not isinstance(output, str) or not _NAME.fullmatch(output):
            raise ValueError(f"invalid output name for the dead-letter store: {output!r}")
        return dlq_subject(self.client.options.stream, output)

    # --- writing -----------------------------------------------------------------------------

    def add(self, output: str, letters: Sequence[Letter]) -> builtins.list[str]:
        """Store ``letters`` for ``output``; return their ids (see the module docstring)."""
        subject = self.subject(output)
        if not letters:
            return []
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        bodies = [_dumps(_body(output, stamp, letter)) for letter in letters]
        token = f"{time.time_ns():x}"
        ids = [f"dlq:{output}:{token}:{i}" for i in range(len(bodies))]
        return self._call(self._add(subject, bodies, ids), 5.0)

    async def _add(self, subject: str, bodies: list[bytes], ids: list[str]) -> builtins.list[str]:
        await self._ensure()
        results = await self.client.request_many(
            [(subject, b, {"Nats-Msg-Id": i}) for b, i in zip(bodies, ids, strict=True)]
        )
        seqs, error = [], None
        for res in results:
            if isinstance(res, BaseException):
                error = error or res
                continue
            ack = orjson.loads(res.data)
            if ack.get("error"):
                error = error or ApiError.of(ack["error"])
                continue
            seqs.append(int(ack["seq"]))
        if error is None:
            return [str(s) for s in seqs]
        await gather_all([self._delete(s) for s in seqs])
        if isinstance(error, ApiError) and error.stream_full:
            self.refused_full += 1
            used = await self._bytes()
            raise DeadLetterFull(used, sum(len(b) for b in bodies), self.max_bytes)
        raise error

    async def _bytes(self) -> int:
        info = await self.client.api(f"STREAM.INFO.{self.stream}")
        return int(info.get("state", {}).get("bytes", 0))

    # --- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Dead letters per output that has any."""
        return self._call(self._counts())

    async def _counts(self) -> dict[str, int]:
        await self._ensure()
        info = await self.client.api(
            f"STREAM.INFO.{self.stream}", {"subjects_filter": f"{self.stream}.*"}
        )
        subjects = (info.get("state") or {}).get("subjects") or {}
        cut = len(self.stream) + 1
        return {s[cut:]: int(n) for s, n in sorted(subjects.items()) if n}

    def outputs(self) -> builtins.list[str]:
        """The outputs that have dead letters, sorted by name."""
        return sorted(self.counts())

    def list(self, output: str | None = None) -> Iterator[StoredLetter]:
        """The dead letters of ``output`` (of every output when None), oldest first per
        output, outputs in name order."""
        for name in [output] if output is not None else self.outputs():
            yield from self._scan(self.subject(name))

    def _scan(self, subject: str) -> Iterator[StoredLetter]:
        name, pending = self._call(self._open_reader(subject))
        puller = Puller(self.client, self.stream, name)
        try:
            while pending > 0:
                msgs = self._call(puller.fetch(min(_CHUNK, pending), 0, lambda: False), 5.0)
                if not msgs:
                    break
                pending -= len(msgs)
                for msg in msgs:
                    letter = self._letter_of(msg.subject, ack_numbers(msg.reply)[1], msg.data)
                    if letter is not None:
                        yield letter
        finally:
            try:
                self._call(self._close_reader(puller, name))
            except JetStreamError:  # it expires by itself after its inactive threshold
                pass

    async def _open_reader(self, subject: str) -> tuple[str, int]:
        await self._ensure()
        config = {
            "ack_policy": "none",
            "deliver_policy": "all",
            "filter_subject": subject,
            "inactive_threshold": 60 * _NS,
            "mem_storage": True,
            "num_replicas": 1,
        }
        resp = await self.client.api(
            f"CONSUMER.CREATE.{self.stream}", {"stream_name": self.stream, "config": config}
        )
        return resp["name"], int(resp.get("num_pending", 0))

    async def _close_reader(self, puller: Puller, name: str) -> None:
        await puller.close()
        await self.client.api(f"CONSUMER.DELETE.{self.stream}.{name}")

    def _letter_of(self, subject: str, seq: int, data: bytes) -> StoredLetter | None:
        """One stored message as a letter, or None (counted) when it is not one."""
        try:
            rec = orjson.loads(data)
            letter = StoredLetter(
                dlq_id=str(seq),
                output=subject.rpartition(".")[2],
                time=rec["time"],
                reason=rec["reason"],
                attempts=rec["attempts"],
                response=rec.get("response"),
                event=rec["event"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            letter = None
        if letter is None or not isinstance(letter.event, dict):
            self.corrupt_lines += 1
            return None
        return letter

    def get(self, dlq_id: str) -> StoredLetter | None:
        """The dead letter with this id, or None."""
        if not dlq_id.isdigit():
            return None
        return self._call(self._get(int(dlq_id)))

    async def _get(self, seq: int) -> StoredLetter | None:
        await self._ensure()
        try:
            got = await self.client.api(f"STREAM.MSG.GET.{self.stream}", {"seq": seq})
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        msg = got["message"]
        return self._letter_of(msg["subject"], seq, base64.b64decode(msg.get("data") or ""))

    def select(self, output: str | None, ids: Iterable[str] | None) -> Letters:
        """The dead letters of ``output`` (every output when None), only ``ids`` when given."""
        wanted = set(ids) if ids else None
        return [s for s in self.list(output) if wanted is None or s.dlq_id in wanted]

    # --- removing ----------------------------------------------------------------------------

    def remove(self, output: str, dlq_ids: set[str]) -> int:
        """Delete these dead letters of ``output``; return how many."""
        subject = self.subject(output)
        seqs = sorted(int(i) for i in dlq_ids if i.isdigit())
        removed = 0
        for at in range(0, len(seqs), _REMOVE_AT_ONCE):  # bounded requests in flight
            removed += self._call(self._remove(subject, seqs[at : at + _REMOVE_AT_ONCE]), 10.0)
        return removed

    async def _remove(self, subject: str, seqs: builtins.list[int]) -> int:
        await self._ensure()
        found = await gather_all([self._get(s) for s in seqs])
        mine = [
            s
            for s, letter in zip(seqs, found, strict=True)
            if isinstance(letter, StoredLetter) and self.subject(letter.output) == subject
        ]
        done = await gather_all([self._delete(s) for s in mine])
        return sum(d is True for d in done)

    async def _delete(self, seq: int) -> bool:
        try:
            await self.client.api(f"STREAM.MSG.DELETE.{self.stream}", {"seq": seq})
        except ApiError as exc:
            if exc.err_code == 10057:  # gone already
                return False
            raise
        return True

    def discard(self, letters: Iterable[StoredLetter]) -> int:
        """Delete these dead letters, whatever their outputs; return how many."""
        ids: dict[str, set[str]] = {}
        for s in letters:
            ids.setdefault(s.output, set()).add(s.dlq_id)
        return sum(self.remove(output, wanted) for output, wanted in ids.items())

    def replay(self, letters: Sequence[StoredLetter], publish: Republish) -> tuple[int, Names]:
        """Put each output's letters back with ``publish(output, events, msg_ids)`` (False:
        no such output), then delete them; return ``(replayed, skipped outputs)``.

        Unlike the file store's, ``publish`` takes the message ids to publish with
        (:func:`replay_ids`; ``JetStreamQueue.publish(events, msg_ids=...)`` does that)."""
        by_output: dict[str, Letters] = {}
        for s in letters:
            by_output.setdefault(s.output, []).append(s)
        done, skipped = 0, []
        for output, items in sorted(by_output.items()):
            if publish(output, [s.event for s in items], replay_ids(items)):
                done += self.discard(items)
            else:
                skipped.append(output)
        return done, skipped

    def purge(self, output: str | None = None) -> int:
        """Delete every dead letter of ``output`` (of every output when None); return how many."""
        body = {"filter": self.subject(output)} if output is not None else {}
        return self._call(self._purge(body), 10.0)

    async def _purge(self, body: dict[str, str]) -> int:
        await self._ensure()
        resp = await self.client.api(f"STREAM.PURGE.{self.stream}", body)
        return int(resp.get("purged", 0))


def _body(output: str, stamp: str, letter: Letter) -> dict[str, Any]:
    response = dict(letter.response) if letter.response is not None else None
    return {
        "output": output,
        "time": stamp,
        "reason": str(letter.reason),
        "attempts": int(letter.attempts),
        "response": response,
        "event": letter.event,
    }
