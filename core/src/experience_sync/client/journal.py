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

Record layout: ``<payload length u32><meta length u32><seq u64>``, then
``meta`` (JSON ``[lane, state_kind, state_key]``), the event body, and a
trailer ``seq XOR MAGIC`` (u64) written last. A process can die in the middle
of any copy; a record counts only if its trailer matches its header, and the
trailer is stored after everything else (a killed process's completed stores
are all in the shared page cache, in program order as far as it is
concerned).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson

HEADER = struct.Struct("<IIQ")
TRAILER = struct.Struct("<Q")
MAGIC = 0x5EC0_5EC0_A11C_E5ED
_ZERO = bytes(HEADER.size)
_HEADER_SIZE = HEADER.size
_TRAILER_SIZE = TRAILER.size
_pack_into = HEADER.pack_into
_pack_trailer = TRAILER.pack_into
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
        self._metas: dict[tuple[str, str | None, str], bytes] = {}
        self._lock = threading.Lock()

    def records(self) -> Iterator[Record]:
        """Every intact record in both files (stale ones included; filter by sequence)."""
        for mm in self._maps:
            pos = 0
            while pos + HEADER.size <= self.size:
                length, meta_len, seq = HEADER.unpack_from(mm, pos)
                end = pos + HEADER.size + length
                if length == 0 or end + _TRAILER_SIZE > self.size or meta_len > length:
                    break
                if TRAILER.unpack_from(mm, end)[0] != seq ^ MAGIC:
                    break  # torn or overwritten: what follows is older data
                payload = mm[pos + HEADER.size : end]
                lane, kind, key = orjson.loads(payload[:meta_len])
                yield seq, lane, payload[meta_len:], kind, key
                pos = end + _TRAILER_SIZE

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
        watermark: int,
    ) -> bool:
        """Copy one row into the journal; ``False`` if there is no room yet.

        ``watermark`` is the sequence up to which everything is committed: a
        file is reused only when all its rows are at or below it. Callers
        serialize their calls (the outbox holds its lock).
        """
        meta = self._metas.get((lane, kind, key))
        if meta is None:
            meta = orjson.dumps([lane, kind, key])
            if len(self._metas) < 4096:  # lanes and kinds are few; keys may not be
                self._metas[(lane, kind, key)] = meta
        meta_len = len(meta)
        length = meta_len + len(body)
        need = _HEADER_SIZE + length + _TRAILER_SIZE
        if need + _HEADER_SIZE > self.size:
            return False
        pos = self._pos
        if pos + need + _HEADER_SIZE > self.size:
            other = 1 - self._current
            if watermark < self._max_seq[other]:
                return False
            self._maps[self._current][pos : pos + _HEADER_SIZE] = _ZERO
            self._current, pos = other, 0
            self._max_seq[other] = 0
        mm = self._maps[self._current]
        start = pos + _HEADER_SIZE
        _pack_into(mm, pos, length, meta_len, seq)
        mm[start : start + meta_len] = meta
        mm[start + meta_len : start + length] = body
        _pack_trailer(mm, start + length, seq ^ MAGIC)  # last: the record is complete
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
