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

Both files are preallocated (``posix_fallocate``) before they are mapped. A
store into a memory-mapped hole needs a block the file system may not have:
on a full disk the kernel answers with SIGBUS, which kills the process. With
every block reserved up front, a store through the map cannot fault; a full
disk shows at allocation instead, as :class:`~experience_sync.errors.DiskFullError`,
and the outbox then runs without a journal (see ``Outbox``).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson

from experience_sync.errors import DiskFullError, OutboxWriteError

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
#: ``errno`` values that mean "no space": the disk, a quota, ``RLIMIT_FSIZE``.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_CHUNK = 1 << 20


def allocate(fd: int, size: int) -> None:
    """Reserve real blocks for the first ``size`` bytes of ``fd``, keeping its data.

    :raises DiskFullError: there is no room (``ENOSPC``, ``EDQUOT``, ``EFBIG``).
    :raises OutboxWriteError: any other I/O error.
    """
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            # No fallocate here: rewrite every byte, which allocates the holes.
            for off in range(0, size, _CHUNK):
                n = min(_CHUNK, size - off)
                data = os.pread(fd, n, off)
                os.pwrite(fd, data + bytes(n - len(data)), off)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise DiskFullError(f"no space to allocate the outbox journal: {exc}") from exc
        raise OutboxWriteError(f"cannot allocate the outbox journal: {exc}") from exc


def _check_room(paths: list[Path], size: int) -> None:
    # Fail before allocating anything: a first file allocated and a second
    # refused would leave 8 MB taken on a disk that has none to spare.
    need = 0
    for path in paths:
        try:
            need += max(0, size - os.stat(path).st_blocks * 512)
        except FileNotFoundError:
            need += size
    if not need:
        return
    st = os.statvfs(paths[0].parent)
    if st.f_bavail * st.f_frsize < need:
        raise DiskFullError(
            f"no space for the outbox journal in {paths[0].parent}: "
            f"{need} bytes needed, {st.f_bavail * st.f_frsize} free"
        )


class Journal:
    """Two memory-mapped files that hold rows until the group commit has them.

    ``writable=False`` maps whatever journal files exist read-only, without
    allocating anything: what the outbox does when the disk is too full for a
    journal, to replay what a killed process left and then run without one.

    :raises DiskFullError: (``writable``) no room for the two files.
    """

    def __init__(
        self, directory: Path, size: int = JOURNAL_BYTES, *, writable: bool = True
    ) -> None:
        self.size = size
        self.writable = writable
        self._maps: list[mmap.mmap] = []
        paths = [directory / f"outbox.journal-{i}" for i in range(2)]
        if writable:
            _check_room(paths, size)
        try:
            for path in paths:
                self._open(path)
        except BaseException:
            for mm in self._maps:
                mm.close()
            raise
        self._current = 0
        self._pos = 0
        self._max_seq = [0, 0]
        self._metas: dict[tuple[str, str | None, str], bytes] = {}
        self._lock = threading.Lock()

    def _open(self, path: Path) -> None:
        size = self.size
        if not self.writable:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return
            try:
                length = min(os.fstat(fd).st_size, size)
                if length >= HEADER.size:
                    self._maps.append(mmap.mmap(fd, length, access=mmap.ACCESS_READ))
            finally:
                os.close(fd)
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            allocate(fd, size)  # before mapping: a store into a hole can SIGBUS
            self._maps.append(mmap.mmap(fd, size))
        finally:
            os.close(fd)

    def records(self) -> Iterator[Record]:
        """Every intact record in both files (stale ones included; filter by sequence)."""
        for mm in self._maps:
            pos = 0
            size = len(mm)
            while pos + HEADER.size <= size:
                length, meta_len, seq = HEADER.unpack_from(mm, pos)
                end = pos + HEADER.size + length
                if length == 0 or end + _TRAILER_SIZE > size or meta_len > length:
                    break
                if TRAILER.unpack_from(mm, end)[0] != seq ^ MAGIC:
                    break  # torn or overwritten: what follows is older data
                payload = mm[pos + HEADER.size : end]
                lane, kind, key = orjson.loads(payload[:meta_len])
                yield seq, lane, payload[meta_len:], kind, key
                pos = end + _TRAILER_SIZE

    def clear(self) -> None:
        """Forget every record (after they were replayed into the outbox)."""
        if not self.writable:
            return  # replayed records sit below the committed watermark: ignored
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
        serialize their calls (the outbox holds its lock). Not for a
        read-only journal.
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
