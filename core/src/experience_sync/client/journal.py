"""The crash journal of the group-commit outbox.

In ``group`` mode a recorded event waits a few milliseconds in memory before
the writer thread commits it to SQLite. So that a killed process (``kill -9``,
an abort, an OOM kill) does not lose those milliseconds, the caller also
copies the row into a memory-mapped file. A shared file mapping lives in the
operating system's page cache, so the copy survives the death of the process
as soon as it is made, without a system call (about a microsecond). It does
not survive a power loss or a kernel crash: against those the durability
point stays the group commit.

Two files alternate: when one is full, the other is reused once every row in
it is committed. On start the outbox replays every journal record whose
sequence number is above the committed watermark it stored in SQLite, then
clears the journal.

Record layout: ``<payload length u32><crc32 u32><seq u64><meta length u32>``
then ``meta`` (JSON ``[lane, state_kind, state_key]``) and the event body.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

HEADER = struct.Struct("<IIQI")
_ZERO = bytes(HEADER.size)
#: Size of each of the two journal files.
JOURNAL_BYTES = 8 * 1024 * 1024

Record = tuple[int, str, bytes, "str | None", str]


class Journal:
    """Two memory-mapped files that hold rows until the group commit has them."""

    def __init__(self, directory: Path, size: int = JOURNAL_BYTES) -> None:
        self.size = size
        self._maps: list[mmap.mmap] = []
        for i in range(2):
            path = directory / f"outbox.journal-{i}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)
                self._maps.append(mmap.mmap(fd, size))
            finally:
                os.close(fd)
        self._current = 0
        self._pos = 0
        self._max_seq = [0, 0]
        self._lock = threading.Lock()

    def records(self) -> Iterator[Record]:
        """Every intact record in both files (stale ones included; filter by sequence)."""
        for mm in self._maps:
            pos = 0
            while pos + HEADER.size <= self.size:
                length, crc, seq, meta_len = HEADER.unpack_from(mm, pos)
                end = pos + HEADER.size + length
                if length == 0 or end > self.size or meta_len > length:
                    break
                payload = mm[pos + HEADER.size : end]
                if zlib.crc32(payload, seq & 0xFFFFFFFF) != crc:
                    break  # torn or overwritten: what follows is older data
                lane, kind, key = orjson.loads(payload[:meta_len])
                yield seq, lane, payload[meta_len:], kind, key
                pos = end

    def clear(self) -> None:
        """Forget every record (after they were replayed into the outbox)."""
        with self._lock:
            for mm in self._maps:
                mm[: HEADER.size] = _ZERO
            self._current = 0
            self._pos = 0
            self._max_seq = [0, 0]

    def append(
        self,
        seq: int,
        lane: str,
        body: bytes,
        kind: str | None,
        key: str,
        watermark: Callable[[], int],
    ) -> bool:
        """Copy one row into the journal; ``False`` if there is no room yet.

        ``watermark()`` is the sequence up to which everything is committed: a
        file is reused only when all its rows are at or below it.
        """
        meta = orjson.dumps([lane, kind, key])
        payload = meta + body
        need = HEADER.size + len(payload)
        if need + HEADER.size > self.size:
            return False
        with self._lock:
            pos = self._pos
            if pos + need + HEADER.size > self.size:
                other = 1 - self._current
                if watermark() < self._max_seq[other]:
                    return False
                self._maps[self._current][pos : pos + HEADER.size] = _ZERO
                self._current, pos = other, 0
                self._max_seq[other] = 0
            mm = self._maps[self._current]
            # Payload first, header last: a record is valid only once complete.
            mm[pos + HEADER.size : pos + need] = payload
            mm[pos : pos + HEADER.size] = HEADER.pack(
                len(payload), zlib.crc32(payload, seq & 0xFFFFFFFF), seq, len(meta)
            )
            self._pos = pos + need
            if seq > self._max_seq[self._current]:
                self._max_seq[self._current] = seq
        return True

    def close(self) -> None:
        """Unmap the files."""
        with self._lock:
            for mm in self._maps:
                mm.close()
            self._maps = []
