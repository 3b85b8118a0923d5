"""Syslog stream framing: cut a TCP byte stream into messages (pure, no sockets).

A :class:`Framer` takes the chunks of one connection and returns the complete messages in them.
Framing is detected per message, as real senders switch: a message that starts with
``[1-9][0-9]{0,9} `` is RFC 6587 octet-counted (``LEN SP MSG``); anything else is
non-transparent and ends at LF (a CR just before it is dropped) or NUL. Empty lines are skipped.

A frame longer than ``max_message`` is counted in :attr:`Framer.oversize` and skipped, even when
it spans many chunks; framing resumes at the next message and the connection lives on. In
``auto`` mode an octet count must be followed by ``<`` (a syslog PRI), and a count that turns
out to be a line merely beginning with digits is a framing error, counted in
:attr:`Framer.invalid`: a frame that holds ``LF <`` is split back into its lines (a bogus
``5000 `` would merge the next lines into one event), and the skip of an oversize frame stops
at the first ``LF <`` inside it and framing resynchronises there (``999999999 `` would
swallow the rest of the stream). The result never depends on where the stream was split
into chunks.

The scan works on whole chunks with ``bytes.find`` and one precompiled regex; it never loops
over single bytes in Python, and a message split over many chunks is copied once, not per chunk.
"""

from __future__ import annotations

import re

__all__ = ["FRAMINGS", "Framer"]

FRAMINGS = ("auto", "octet-counted", "lf")

_OCTET = re.compile(rb"([1-9][0-9]{0,9}) ")
_OCTET_AUTO = re.compile(rb"([1-9][0-9]{0,9}) (?=<)")  # auto: the frame starts with a PRI
_UNDECIDED = re.compile(rb"[1-9][0-9]{0,9} ?")  # a count whose next byte has not come yet
_DIGIT_START = re.compile(rb"\n[1-9]")  # a line that may start an octet-counted frame
_MAX_HEAD = 12  # "[1-9][0-9]{0,9} " is at most 11 bytes; the 12th byte decides
_LF, _NUL, _CR, _LT = 10, 0, 13, 60


class Framer:
    """Split one connection's byte stream into messages.

    ``framing`` is ``"auto"`` (octet counting or LF/CRLF/NUL, detected per message),
    ``"octet-counted"`` (only ``LEN SP MSG``; anything else up to the next LF or NUL is
    counted in :attr:`invalid` and dropped) or ``"lf"`` (only LF/CRLF terminated lines).

    Counters: :attr:`frames` (messages returned), :attr:`oversize` (frames skipped because
    they exceed ``max_message``), :attr:`invalid` (garbage dropped in octet-counted mode).
    """

    __slots__ = (
        "max_message",
        "framing",
        "frames",
        "oversize",
        "invalid",
        "_octet",
        "_nul",
        "_skip",
        "_skip_lf",
        "_skip_head",
        "_discard",
        "_line",
        "_frame",
        "_need",
        "_head",
    )

    def __init__(self, max_message: int = 65536, framing: str = "auto") -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r}; expected one of {FRAMINGS}")
        if max_message < 1:
            raise ValueError("max_message must be at least 1")
        self.max_message = max_message
        self.framing = framing
        self.frames = 0
        self.oversize = 0
        self.invalid = 0
        self._octet = framing != "lf"  # octet counting is tried at message starts
        self._nul = framing != "lf"  # NUL ends a non-transparent message
        self._skip = 0  # bytes of an oversize octet-counted frame still to drop
        self._skip_lf = False  # the bytes skipped so far end with LF
        # auto mode: the first bytes of a skipped frame, in case the count was a line's digits
        self._skip_head: bytearray | None = None
        self._discard = False  # dropping up to the next terminator (oversize line, garbage)
        self._line: bytearray | None = None  # unterminated non-transparent message
        self._frame: bytearray | None = None  # incomplete octet-counted payload ...
        self._need = 0  # ... and how many bytes it still lacks
        self._head = b""  # a message start too short to tell the framing yet

    def feed(self, data: bytes) -> list[bytes]:
        """Return the messages completed by ``data`` (possibly none), in stream order."""
        out: list[bytes] = []
        if not data:  # completes nothing (and the states below expect at least one byte)
            return out
        pos = 0
        if self._skip or self._frame is not None:
            pos = self._continue_frame(data, out)
        elif self._line is not None or self._discard:
            pos = self._continue_line(data, out)
        elif self._head:
            data = self._head + data
            self._head = b""
        if pos < len(data):
            self._scan(data, pos, out)
        self.frames += len(out)
        return out

    def flush(self) -> list[bytes]:
        """End of stream: return the unterminated last message, if any, and reset."""
        if self._frame is not None:
            msg = bytes(self._frame)
        elif self._line is not None:
            msg = bytes(self._line[:-1] if self._line.endswith(b"\r") else self._line)
        else:
            msg = self._head
            if self._skip:  # the stream ended inside an oversize frame
                self.oversize += 1
            if msg and self.framing == "octet-counted":  # a count with no frame after it
                self.invalid += 1
                msg = b""
        self._reset()
        if not msg:
            return []
        if len(msg) > self.max_message:
            self.oversize += 1
            return []
        self.frames += 1
        return [msg]

    @property
    def counters(self) -> dict[str, int]:
        """``frames``, ``oversize`` and ``invalid`` as a dict."""
        return {"frames": self.frames, "oversize": self.oversize, "invalid": self.invalid}

    @property
    def pending(self) -> int:
        """Bytes held back for an incomplete message (0 between messages)."""
        held = self._frame if self._frame is not None else self._line
        return len(held) if held is not None else len(self._head)

    @property
    def in_frame(self) -> bool:
        """True inside an octet-counted frame: ending the stream now would cut it short."""
        return self._frame is not None

    def _reset(self) -> None:
        self._skip = 0
        self._skip_lf = False
        self._skip_head = None
        self._discard = False
        self._line = self._frame = None
        self._need = 0
        self._head = b""

    def _terminator(self, buf: bytes, start: int) -> int:
        """Position of the first LF (or NUL when allowed) at or after ``start``, or -1."""
        lf = buf.find(b"\n", start)
        if not self._nul:
            return lf
        nul = buf.find(b"\0", start, lf if lf >= 0 else len(buf))
        return nul if nul >= 0 else lf

    def _continue_frame(self, data: bytes, out: list[bytes]) -> int:
        """Consume the rest of an octet-counted frame (kept or being skipped)."""
        take = min(self._skip or self._need, len(data))
        held = self._frame
        after_lf = held[-1:] == b"\n" if held is not None else self._skip_lf
        lf = self._misframe(data, 0, take, after_lf)
        if lf > -2:  # the count was a line's digits: that line ends here, then resynchronise
            begun = held if held is not None else self._skip_head
            if begun is not None:
                self._line_out(bytes(begun) + data[:lf] if lf >= 0 else bytes(begun[:-1]), out)
            self._frame, self._need, self._skip, self._skip_lf = None, 0, 0, False
            self._skip_head = None
            return lf + 1
        if self._skip:
            self._skip -= take
            self._skip_lf = data[take - 1] == _LF
            self._keep_head(data, 0, take)
            if not self._skip:
                self.oversize += 1
                self._skip_head = None
            return take
        assert held is not None
        held += data[:take]
        self._need -= take
        if not self._need:
            out.append(bytes(held))
            self._frame = None
        return take

    def _misframe(self, data: bytes, start: int, stop: int, after_lf: bool) -> int:
        """Auto mode: where an ``LF <`` inside ``data[start:stop]`` of a frame shows that its
        count was a line's digits (the LF's position; ``start - 1`` when the LF ended the bytes
        before), else -2."""
        if self.framing != "auto" or stop <= start:
            return -2
        if after_lf and data[start] == _LT:
            self.invalid += 1
            return start - 1
        lf = data.find(b"\n<", start, stop)
        if lf >= 0:
            self.invalid += 1
        return lf if lf >= 0 else -2

    def _continue_line(self, data: bytes, out: list[bytes], start: int = 0) -> int:
        """Consume the rest of an unterminated line (kept or being discarded) from ``start``;
        return the position after it (``len(data)`` when it goes on in the next chunk)."""
        end = self._terminator(data, start)
        if self._discard:
            if end >= 0:
                self._discard = False
            return len(data) if end < 0 else end + 1
        line = self._line
        assert line is not None
        if end < 0:
            line += data[start:] if start else data
            if len(line) > self.max_message + 1:  # +1: a trailing CR may still be dropped
                self._line = None
                self._discard = True
                self.oversize += 1
            return len(data)
        line += data[start:end]
        self._line = None
        if data[end] == _LF and line.endswith(b"\r"):
            del line[-1]
        if len(line) > self.max_message:
            self.oversize += 1
        elif line:
            out.append(bytes(line))
        return end + 1

    def _scan(self, buf: bytes, pos: int, out: list[bytes]) -> None:
        """Cut messages from ``buf[pos:]``, which starts at a message boundary."""
        if self._plain_lines(buf, pos):
            self._scan_lines(buf[pos:] if pos else buf, out)
        else:
            self._scan_mixed(buf, pos, out)

    def _plain_lines(self, buf: bytes, pos: int) -> bool:
        """True when ``buf[pos:]`` holds only LF-terminated lines: no NUL, no octet count."""
        if self._nul and buf.find(b"\0", pos) >= 0:
            return False
        if not self._octet:
            return True
        if self.framing == "octet-counted" or 49 <= buf[pos] <= 57:
            return False
        return _DIGIT_START.search(buf, pos) is None

    def _scan_lines(self, buf: bytes, out: list[bytes]) -> None:
        """The common case, split at C speed: LF/CRLF lines, the last one maybe partial."""
        lines = buf.split(b"\n")
        tail = lines.pop()
        if b"\r" in buf:
            lines = [x[:-1] if x[-1:] == b"\r" else x for x in lines]
        lines = [x for x in lines if x]
        limit = self.max_message
        if lines and max(map(len, lines)) > limit:
            kept = [x for x in lines if len(x) <= limit]
            self.oversize += len(lines) - len(kept)
            lines = kept
        out += lines
        if tail:
            self._partial_line(tail, 0)

    def _scan_mixed(self, buf: bytes, pos: int, out: list[bytes]) -> None:
        """Message by message: octet counts, NUL terminators, forced octet framing."""
        n = len(buf)
        limit = self.max_message
        octet = self._octet
        forced_octet = self.framing == "octet-counted"
        count = _OCTET if forced_octet else _OCTET_AUTO
        term = -1  # next terminator at or after pos, found lazily
        while pos < n:
            c = buf[pos]
            if c == _LF or (c == _NUL and self._nul):
                pos += 1  # empty line
                continue
            if octet and 49 <= c <= 57 or forced_octet:
                m = count.match(buf, pos)
                if m is not None:
                    pos = self._octet_frame(buf, m.end(), int(m.group(1)), out)
                    continue
                if self._undecided(buf, pos):
                    self._head = buf[pos:]
                    return
                if forced_octet:
                    self.invalid += 1
                    term = self._terminator(buf, pos)
                    if term < 0:
                        self._discard = True
                        return
                    pos = term + 1
                    continue
            if term < pos:
                term = self._terminator(buf, pos)
                if term < 0:
                    self._partial_line(buf, pos)
                    return
            end = term - 1 if buf[term] == _LF and buf[term - 1] == _CR else term
            if end - pos > limit:
                self.oversize += 1
            elif end > pos:
                out.append(buf[pos:end])
            pos = term + 1

    def _octet_frame(self, buf: bytes, start: int, length: int, out: list[bytes]) -> int:
        """Take or skip the frame whose payload starts at ``start``; return the next position."""
        end = start + length
        n = len(buf)
        lf = self._misframe(buf, start, min(end, n), False)
        if lf >= 0:  # the count was a line's digits: that line ends here, then resynchronise
            self._line_out(buf[start:lf], out)
            return lf + 1
        if length > self.max_message:
            if end > n:
                self._skip = end - n
                self._skip_lf = buf[n - 1] == _LF
                if self.framing == "auto":
                    self._skip_head = bytearray()
                    self._keep_head(buf, start, n)
            else:
                self.oversize += 1
        elif end <= n:
            out.append(buf[start:end])
        else:
            self._frame = bytearray(buf[start:])
            self._need = end - n
        return min(end, n)

    def _keep_head(self, data: bytes, start: int, stop: int) -> None:
        """Keep (bounded by max_message) what a skip passes over, for :meth:`_continue_frame`."""
        head = self._skip_head
        if head is not None:
            room = self.max_message + 2 - len(head)
            if room > 0:
                head += data[start : min(stop, start + room)]

    def _line_out(self, line: bytes, out: list[bytes]) -> None:
        """Hand over one LF-terminated line (its CR dropped) unless it is empty or too long."""
        if line[-1:] == b"\r":
            line = line[:-1]
        if len(line) > self.max_message:
            self.oversize += 1
        elif line:
            out.append(line)

    def _undecided(self, buf: bytes, pos: int) -> bool:
        """True when ``buf[pos:]`` may still become a count once more data arrives."""
        if len(buf) - pos >= _MAX_HEAD:
            return False
        m = _UNDECIDED.match(buf, pos)
        return m is not None and m.end() == len(buf)

    def _partial_line(self, buf: bytes, pos: int) -> None:
        """Keep an unterminated line for the next chunk, or start discarding it."""
        if len(buf) - pos > self.max_message + 1:
            self.oversize += 1
            self._discard = True
        else:
            self._line = bytearray(buf[pos:])
