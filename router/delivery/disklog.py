"""The files behind a :class:`~dsrouter.delivery.diskqueue.DiskQueue`: recovery, appends,
the reader, the ack state and group commit (the lock and descriptors: :mod:`.diskfiles`).
See :mod:`~dsrouter.delivery.diskqueue` for what survives what, and
:mod:`~dsrouter.delivery.segments` for the bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import segments as sg
from .diskfiles import Files, Spares, lock_directory
from .freshtail import FreshTail, Taken

#: Bytes of just-appended records a caught-up reader takes from memory instead of the file.
FRESH_BYTES = 8 << 20


@dataclass(slots=True)
class _Seg:
    first: int  # the seq in the file name: every record in the file has a seq >= it
    path: Path
    size: int = 0  # committed bytes
    count: int = 0  # unacked records the reader has not reached
    nbytes: int = 0  # their payload bytes


def _sync_loop(ref: weakref.ref[SegmentLog], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        log = ref()
        if log is None:
            return
        log.sync()
        del log


class SegmentLog:
    """The segment files, reader and ack state of one queue directory.

    Not thread-safe: the queue calls it holding ``lock``, which the group-commit thread takes
    too. ``unread``/``unread_bytes`` count the unacked records the reader has not reached.
    """

    def __init__(
        self, directory: Path, segment_bytes: int, fsync: float | str, lock: threading.Condition
    ) -> None:
        self.directory, self.segment_bytes, self.fsync = directory, segment_bytes, fsync
        self._lock = lock
        directory.mkdir(parents=True, exist_ok=True)
        self._files = Files()
        self._segs: list[_Seg] = []
        self._wfd: int | None = None
        self._retired: list[int] = []  # write fds of rolled segments, for the syncer
        self._rfds: dict[int, int] = {}
        self._ri = 0  # index in _segs of the segment being read
        self._scanner: sg.Scanner | None = None
        self._head: sg.Entry | None = None  # next unacked record not yet taken
        self._scanned = 0  # highest seq the reader went past
        # records appended while the reader was caught up, in order: the reader's next ones
        self._fresh = FreshTail()
        self._resume: sg.Entry | None = None  # the last one taken: where the file read resumes
        self.unread = self.unread_bytes = self.corrupt = self.recovered = 0
        self._dirty = self._dir_dirty = False
        self._written: tuple[object, ...] | None = None
        self.state_rebuilt = False
        try:
            lock_directory(self._files, directory)
            self._spares = Spares(directory)
            self._recover()
        except BaseException:
            self._files.close_all()
            raise
        self._finalizer = weakref.finalize(self, self._files.close_all)
        self._syncer: threading.Thread | None = None
        if isinstance(fsync, float):
            args = (weakref.ref(self), self._files.stop, fsync)
            self._syncer = threading.Thread(
                target=_sync_loop, args=args, name=f"dsrouter-fsync-{directory.name}", daemon=True
            )
            self._syncer.start()

    # -- recovery -------------------------------------------------------------------------

    def _recover(self) -> None:
        found = sg.read_state(self.directory / "state")
        segments = sg.list_segments(self.directory)
        gen, state = found if found else (0, sg.AckState())
        if found is None and (segments or (self.directory / "state").exists()):
            self.state_rebuilt = True
            self.corrupt += 1
        top = 0
        for i, (first, path) in enumerate(segments):
            later = segments[i + 1][0] if i + 1 < len(segments) else None
            if later is not None and later <= state.floor:
                self._unlink(path)  # every record in it is acked
                continue
            seg, last_seq = self._scan(first, path, state, later is None)
            top = max(top, last_seq, first - 1)
            if seg is not None:
                self._segs.append(seg)
        self.next_seq = max(state.next_seq, top + 1, state.floor, 1)
        self.unread = self.recovered = sum(s.count for s in self._segs)
        self.unread_bytes = sum(s.nbytes for s in self._segs)
        self._old = state
        self._scanned = max(state.floor, 1) - 1
        if self._segs:
            self._wfd = self._files.open(self._segs[-1].path, os.O_WRONLY)
            os.lseek(self._wfd, self._segs[-1].size, os.SEEK_SET)
        self._state_fd = self._files.open(self.directory / "state", os.O_RDWR | os.O_CREAT)
        self._state_gen = gen
        size = os.fstat(self._state_fd).st_size
        with contextlib.suppress(OSError):  # room for both slots, so acks never need blocks
            if size < 2 * sg.SLOT_SIZE:
                sg.pwrite(self._state_fd, bytes(2 * sg.SLOT_SIZE - size), size)
        self.commit(())

    def _scan(
        self, first: int, path: Path, state: sg.AckState, last: bool
    ) -> tuple[_Seg | None, int]:
        """Verify one segment: count its unacked records, cut a torn tail off the last one."""
        seg = _Seg(first, path)
        try:
            fd = os.open(path, os.O_RDONLY | sg.O_BINARY)
            try:
                seg.size = os.fstat(fd).st_size
                scanner = sg.Scanner(fd, 0, seg.size, first - 1)
                while (entry := scanner.next()) is not None:
                    if not state.acked(entry.seq):
                        seg.count += 1
                        seg.nbytes += len(entry.payload)
            finally:
                os.close(fd)
        except OSError:
            self._quarantine(path)
            return None, 0
        self.corrupt += scanner.corrupt
        if scanner.stale:  # a recycled file: its new records end here
            seg.size = scanner.tail or 0
            if last:
                with contextlib.suppress(OSError):
                    os.truncate(path, seg.size)
        elif scanner.tail is not None and last:
            self.corrupt += scanner.tail_complete  # a whole record that fails its CRC
            seg.size = scanner.tail
            with contextlib.suppress(OSError):
                os.truncate(path, seg.size)
        elif scanner.tail is not None:
            self.corrupt += 1
        if seg.size == 0:
            self._unlink(path)
            return None, 0
        return seg, scanner.last_seq

    def _quarantine(self, path: Path) -> None:
        self.corrupt += 1
        target = self.directory / "corrupt" / path.name
        with contextlib.suppress(OSError):
            target.parent.mkdir(exist_ok=True)
            if target.exists():
                target = target.with_name(f"{path.name}.{time.time_ns()}")
            os.replace(path, target)

    def _unlink(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        self._dir_dirty = True

    # -- appending ------------------------------------------------------------------------

    def append(
        self,
        payloads: list[bytes],
        crcs: list[int],
        times: list[float],
        sizes: list[int],
        nbytes: int,
    ) -> None:
        """Write one batch (one ``write``) numbered from ``next_seq``; all or nothing.
        ``crcs`` and ``sizes`` are the payloads' crc32s and lengths, ``nbytes`` their sum."""
        caught_up = self._head is None and self.unread == self._fresh.count
        seg = self._active()
        offset = seg.size
        data = sg.encode_batch(self.next_seq, times, payloads, crcs, sizes)
        fd = self._wfd
        assert fd is not None
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                n = os.write(fd, view[done:])
                if n <= 0:
                    raise OSError(errno.EIO, "short write", str(seg.path))
                done += n
            if self.fsync == "always":
                sg.datasync(fd)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._spares.drop()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, seg.size)  # leave no torn bytes behind
            with contextlib.suppress(OSError):
                os.lseek(fd, seg.size, os.SEEK_SET)
            raise
        if caught_up and self._fresh.nbytes + nbytes <= FRESH_BYTES:
            self._fresh.keep(seg, self.next_seq, offset, payloads, times, sizes, nbytes)
        seg.size += len(data)
        seg.count += len(payloads)
        seg.nbytes += nbytes
        self.unread += len(payloads)
        self.unread_bytes += nbytes
        self.next_seq += len(payloads)
        self._dirty = True

    def _active(self) -> _Seg:
        """The segment to append to, starting a new one when the current one is full."""
        if self._wfd is not None:
            seg = self._segs[-1]
            if seg.size < self.segment_bytes or seg.first >= self.next_seq:
                return seg
        seg = _Seg(self.next_seq, self.directory / f"{self.next_seq:020d}.seg")
        fd = self._spares.reuse(self._files, seg.path)
        if fd is None:
            fd = self._files.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        if self._wfd is not None:
            with contextlib.suppress(OSError):  # a recycled file: cut its older life off
                os.ftruncate(self._wfd, self._segs[-1].size)
            if isinstance(self.fsync, float):
                self._retired.append(self._wfd)  # the syncer fsyncs and closes it
            else:
                self._files.close(self._wfd)
        self._wfd = fd
        self._segs.append(seg)
        self._dir_dirty = True
        if self.fsync == "always":
            self._sync_dir()
        return seg

    # -- reading --------------------------------------------------------------------------

    def _rfd(self, first: int) -> int:
        fd = self._rfds.get(first)
        if fd is None:
            path = self.directory / f"{first:020d}.seg"
            fd = self._rfds[first] = self._files.open(path, os.O_RDONLY)
        return fd

    def head(self) -> sg.Entry | None:
        """The oldest unacked record not taken yet (read on demand), or None."""
        if self._head is None:
            if self._fresh:
                return self._fresh.first()
            if self._resume is not None:
                self._seek_past(self._resume)
        while self._head is None:
            if self._ri >= len(self._segs):
                return None
            seg = self._segs[self._ri]
            last = self._ri == len(self._segs) - 1
            try:
                if self._scanner is None:
                    self._scanner = sg.Scanner(self._rfd(seg.first), 0, seg.size, seg.first - 1)
                self._scanner.end = seg.size
                entry = self._scanner.next()
            except OSError:
                if last:
                    return None
                entry = None
            if entry is None:
                if last:
                    return None
                self._settle(seg)
                self._ri += 1
                self._scanner = None
                continue
            self._scanned = max(self._scanned, entry.seq)
            if not self._old.acked(entry.seq):
                entry.seg = seg.first
                self._head = entry
        return self._head

    def _seek_past(self, entry: sg.Entry) -> None:
        """Point the file reader just past ``entry`` (the last record taken from memory)."""
        self._resume = None
        segs = self._segs
        while self._ri < len(segs) and segs[self._ri].first < entry.seg:
            self._settle(segs[self._ri])  # passed in memory: nothing unread is left in it
            self._ri += 1
        self._scanner = None  # entry's segment is gone (all acked): read the next from its start
        if self._ri < len(segs) and segs[self._ri].first == entry.seg:
            end = entry.offset + sg.HEADER_SIZE + len(entry.payload)
            self._scanner = sg.Scanner(self._rfd(entry.seg), end, segs[self._ri].size)
            self._scanner.last_seq = entry.seq

    def take(self) -> sg.Entry | None:
        """Take the head record: from now on the queue tracks it."""
        if self.take_fresh(1) is not None:
            return self._resume
        entry = self.head()
        if entry is not None:
            self._head = None
            seg = self._segs[self._ri]
            seg.count -= 1
            seg.nbytes -= len(entry.payload)
            self.unread -= 1
            self.unread_bytes -= len(entry.payload)
        return entry

    def take_fresh(self, n: int) -> Taken | None:
        """Take up to ``n`` records at once when the next ones are in memory (the caught-up
        reader's common case), all from one appended batch; None when they are not."""
        if self._head is not None or not self._fresh:
            return None
        seg, taken, nbytes = self._fresh.take(n)
        seq, _, offsets, payloads, times = taken
        k = len(payloads)
        seg.count -= k
        seg.nbytes -= nbytes
        self.unread -= k
        self.unread_bytes -= nbytes
        self._scanned = max(self._scanned, seq + k - 1)
        self._resume = sg.Entry(seq + k - 1, times[-1], offsets[-1], payloads[-1], seg.first)
        return taken

    def reread(self, seg: int, offset: int, seq: int, size: int) -> bytes | None:
        """A taken record's payload again, or None when it no longer verifies."""
        try:
            data = sg.pread(self._rfd(seg), sg.HEADER_SIZE + size, offset)
        except OSError:
            return None
        rec = sg.check_record(data)
        return rec[1] if rec is not None and rec[0] == seq else None

    def _settle(self, seg: _Seg) -> None:
        """The reader is done with ``seg``: records counted but not found were damaged."""
        if seg.count:
            self.unread -= seg.count
            self.unread_bytes -= seg.nbytes
            self.corrupt += seg.count
            seg.count = seg.nbytes = 0

    # -- ack state ------------------------------------------------------------------------

    def commit(self, taken: Iterable[int]) -> None:
        """Write the ack state through, given the taken records still unacked (in seq order),
        and delete the segments left with nothing unacked."""
        read_seq = self._head.seq if self._head else self._scanned + 1
        runs: list[list[int]] = []
        for seq in taken:
            if runs and runs[-1][1] == seq:
                runs[-1][1] = seq + 1
            else:
                runs.append([seq, seq + 1])
        floor = runs[0][0] if runs else read_seq
        limit, old = read_seq, self._old
        if old.limit > read_seq:  # acks recovered from the last state, not read past yet
            limit = old.limit
            runs.extend([max(lo, read_seq), hi] for lo, hi in old.runs if hi > read_seq)
        if len(runs) > sg.MAX_RUNS:  # conservative: everything from there counts as unacked
            limit = runs[sg.MAX_RUNS][0]
            del runs[sg.MAX_RUNS :]
        st = sg.AckState(floor, limit, tuple((lo, hi) for lo, hi in runs), self.next_seq)
        key = (st.floor, st.limit, st.runs, st.next_seq)
        if key != self._written:
            gen = self._state_gen + 1
            try:
                sg.pwrite(self._state_fd, sg.encode_slot(gen, st), (gen % 2) * sg.SLOT_SIZE)
                if self.fsync == "always":
                    sg.datasync(self._state_fd)
            except OSError:
                pass  # retried by the next commit or sync; the other slot is intact
            else:
                self._state_gen, self._written, self._dirty = gen, key, True
        self._drop_below(floor)

    def _drop_below(self, floor: int) -> None:
        segs = self._segs
        while len(segs) > 1 and segs[1].first <= floor:  # segs[0] holds only acked seqs
            seg = segs.pop(0)
            self._settle(seg)
            if self._ri == 0:
                self._scanner = None
            else:
                self._ri -= 1
            fd = self._rfds.pop(seg.first, None)
            if fd is not None:
                self._files.close(fd)
            if not self._spares.keep(seg.path):
                self._unlink(seg.path)
            self._dir_dirty = True

    # -- durability -----------------------------------------------------------------------

    def _sync_dir(self) -> None:
        if sys.platform != "win32":
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def sync(self) -> None:
        """One group commit (the syncer thread): fsync what changed, outside the lock."""
        with self._lock:
            if self._files.stop.is_set() or not self._dirty:
                return
            self._dirty = False
            fds = [fd for fd in (self._wfd, self._state_fd) if fd is not None]
            retired, self._retired = self._retired, []
            dirsync, self._dir_dirty = self._dir_dirty, False
        try:
            for fd in retired + fds:
                sg.datasync(fd)
            if dirsync:
                self._sync_dir()
        except OSError:
            with self._lock:
                self._retired[:0] = retired
                self._dirty = True
                self._dir_dirty |= dirsync
            return
        for fd in retired:
            self._files.close(fd)

    def close(self, taken: Iterable[int]) -> None:
        """Commit, fsync (unless ``fsync="never"``) and release the directory. Called without
        the lock (it stops the syncer first)."""
        self._files.stop.set()
        if self._syncer is not None and self._syncer is not threading.current_thread():
            self._syncer.join()
        with self._lock:
            self.commit(taken)
            if self.fsync != "never":
                with contextlib.suppress(OSError):
                    for fd in [*self._retired, self._wfd, self._state_fd]:
                        if fd is not None:
                            sg.datasync(fd)
                    self._sync_dir()
            self._files.close_all()
            self._finalizer.detach()
