"""The accounting's event log: one CSV line per event, appended to `accounting-<pid>.csv` in the
directory the setting STREAM_RELEASE_EVENT_LOG_DIR names (none when it is empty).

Each process copies its lines into a memory map of its file's end, not with write(): a write
to a file is a system call, which on this project's 2-core virtual machine took 20 to 30 µs
timed alone with the caches cold, as under load (docs/scale.md), where the rest of the
accounting's work at a checkout and its return costs a few µs. The map
is the kernel's page cache, so a worker killed with SIGKILL loses no line written. Ahead of
the last line the file holds room for the next ones (ROOM bytes of NUL, reserved with
posix_fallocate where the file system has it, so a full disk is an OSError, not a SIGBUS); a
process trims it at exit (after the finalizers weakref runs then, which may write lines)
or when it changes directory, and read() leaves it out, with a line cut short by a kill.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import gc
import io
import mmap
import os
import threading
import time
import weakref
from collections.abc import Iterator

from stream_release.conf import setting

EVENT_LOG_HEADER = "event,unix_s,route,wait_ms,hold_ms,backend_pid,acquire_id,detail\n"
ROOM = 1 << 20  # bytes mapped ahead of the last line at a time


class _EventLog:
    """One CSV per process. A line goes in with one mmap.write(): C code that holds the GIL
    from the check for room to the copy, so it is whole even when the garbage collector runs,
    in the middle of this thread's line, a finalizer that writes one, or another thread writes
    (a Python without the GIL would need a lock here). When a map has no room left, it is
    closed (a line another thread was about to put into it fails, and goes into the next) and
    a map of the file from the end of its lines takes its place."""

    def __init__(self) -> None:
        # self._map and self._fd are None while the file is not open (self._opened is None then):
        # typed as open, as every use of them is (their None assignments are marked)
        self._map: mmap.mmap = None  # type: ignore[assignment]
        self._fd: int = None  # type: ignore[assignment]
        self._base = 0  # where in the file self._map starts
        self._opened: tuple[int, str] | None = None  # (pid, directory) of self._map
        self._lock = threading.RLock()  # only for opening, mapping the next part and closing
        self._gc_paused = False  # the collector is off inside _alone(), turned on again after
        # at exit, after the finalizers made later, such as the persistent connections' (their
        # returns are lines too): weakref runs those left at exit newest first. The bound method
        # keeps this object alive, as the module does anyway
        weakref.finalize(self, self.close)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forked)

    def write(
        self,
        event: str,
        route: str,
        wait_ms: str = "",
        hold_ms: str = "",
        backend_pid: int | str = "",
        acquire_id: int | str = "",
        detail: str = "",
    ) -> None:
        directory = setting("STREAM_RELEASE_EVENT_LOG_DIR")
        if not directory:
            return
        # the pid at every line: a server may fork without os.register_at_fork's hooks running
        # (uWSGI by default), and a worker must not write into its master's map
        into = self._map if self._opened == (os.getpid(), directory) else None
        if detail:
            detail = detail.replace('"', "'").replace("\n", " ")
        line = f'{event},{time.time():.6f},{route},{wait_ms},{hold_ms},{backend_pid},{acquire_id},"{detail}"\n'
        data = line.encode()
        while True:
            if into is not None:
                try:
                    into.write(data)
                    return
                except ValueError:  # no room left in it, or closed: another thread mapped the next part
                    pass
            into = self._room(directory, len(data))

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        """The lock, and no collection meanwhile: a finalizer run by the garbage collector in this
        thread writes a line too, and must not open or map the file half way through this."""
        with self._lock:
            self._gc_paused = gc.isenabled()
            gc.disable()
            try:
                yield
            finally:
                if self._gc_paused:
                    self._gc_paused = False
                    gc.enable()

    def _forked(self) -> None:
        """In a child forked while another thread of its parent was inside _alone() (its system
        calls let others run): that thread is not here to let go of the lock, or to turn the
        collector on again."""
        self._lock = threading.RLock()
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def _room(self, directory: str, size: int) -> mmap.mmap:
        """The map of this process's file in `directory`, with room for `size` bytes."""
        with self._alone():
            if self._opened != (os.getpid(), directory):
                self._open(directory)
            if len(self._map) - self._map.tell() < size:  # else made by another thread meanwhile
                self._map_next(self._base + self._map.tell(), size)
            return self._map

    def _open(self, directory: str) -> None:
        """This process's file in `directory`, mapped from the end of its lines (an earlier
        process of the same pid may have left room after them, or a line cut short)."""
        if self._opened is not None and self._opened[0] == os.getpid():
            self._close()  # another directory (only tests change it)
        elif self._fd is not None:  # a forked child's (its parent's), or one whose next map failed
            os.close(self._fd)
        path = os.path.join(directory, f"accounting-{os.getpid()}.csv")
        self._fd, self._map, self._base = os.open(path, os.O_RDWR | os.O_CREAT, 0o644), None, 0  # type: ignore[assignment]
        self._map_next(0, len(EVENT_LOG_HEADER))
        if self._base + self._map.tell() == 0:
            self._map.write(EVENT_LOG_HEADER.encode())
        self._opened = (os.getpid(), directory)

    def _map_next(self, since: int, size: int) -> None:
        """Close the map (no line goes into it from now on), and map the file from the end of
        its lines (at or after `since`, where one ends) with room for `size` bytes. When that
        fails (a full disk), the error goes to the event's caller, and the next line opens the
        file again."""
        old, self._map = self._map, None  # type: ignore[assignment]
        if old is not None:
            old.close()
        try:
            end = _end_of_lines(self._fd, since)
            start = end - end % mmap.ALLOCATIONGRANULARITY
            length = end - start + max(ROOM, size)
            _reserve(self._fd, start, length)
            new = mmap.mmap(self._fd, length, offset=start)
            new.seek(end - start)  # before another thread can see it
        except BaseException:
            self._opened = None
            raise
        self._map, self._base = new, start

    def close(self) -> None:
        """Trim the room after this process's last line, and close its file (at exit; the next
        line opens it again)."""
        with self._alone():
            if self._opened is not None and self._opened[0] == os.getpid():
                self._close()

    def _close(self) -> None:
        since = self._base + self._map.tell()
        self._opened = None
        self._map.close()
        os.ftruncate(self._fd, _end_of_lines(self._fd, since))
        os.close(self._fd)
        self._map = self._fd = None  # type: ignore[assignment]


def _reserve(fd: int, start: int, length: int) -> None:
    """Blocks on disk for the file's bytes [start, start + length): a full disk is ENOSPC now,
    not a SIGBUS when the map touches them. Where the file system cannot (EOPNOTSUPP under musl,
    say) or the platform has no posix_fallocate, only the file's size grows."""
    try:
        os.posix_fallocate(fd, start, length)
        return
    except AttributeError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    if os.fstat(fd).st_size < start + length:
        os.ftruncate(fd, start + length)


def _end_of_lines(fd: int, since: int = 0) -> int:
    """Where the last whole line of the file ends, at or after `since` (where one ends): what
    follows is room, or a line a kill cut short."""
    at = os.fstat(fd).st_size
    while at > since:
        start = max(since, at - ROOM)
        newline = os.pread(fd, at - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        at = start
    return since


event_log = _EventLog()


def read(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The events of one `accounting-<pid>.csv`, as csv.DictReader gives them: up to its last
    whole line, without the room a live or killed process leaves after it."""
    with open(path, "rb") as f:
        data = f.read()
    text = data[: data.rfind(b"\n") + 1].decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))
