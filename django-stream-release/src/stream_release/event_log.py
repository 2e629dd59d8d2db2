"""The accounting's event log: one CSV line per event, appended to `accounting-<pid>.csv` in the
directory the setting STREAM_RELEASE_EVENT_LOG_DIR names (none when it is empty)."""

import os
import threading
import time

from stream_release.conf import setting

EVENT_LOG_HEADER = "event,unix_s,route,wait_ms,hold_ms,backend_pid,acquire_id,detail\n"


class _EventLog:
    """One CSV per process. Each line is one os.write() to a file opened with O_APPEND: nothing
    is buffered in the process, so a killed worker loses nothing written, and a line written
    from a finalizer while this thread writes another cannot cut into it (the kernel appends each
    write whole). It is also the cheapest way to write a line from Python: no buffer, no lock."""

    def __init__(self):
        self._fd = None
        self._opened = None  # (pid, directory) of self._fd
        # only for opening; reentrant: a finalizer run by the garbage collector while this
        # thread opens the file writes too
        self._lock = threading.RLock()

    def _open(self, directory):
        with self._lock:
            if self._opened != (os.getpid(), directory):  # a forked worker, or another directory
                path = os.path.join(directory, f"accounting-{os.getpid()}.csv")
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                if os.fstat(fd).st_size == 0:
                    os.write(fd, EVENT_LOG_HEADER.encode())
                # the file of the directory before stays open: another thread may be writing to it
                # (only tests change the directory)
                self._fd, self._opened = fd, (os.getpid(), directory)
        return self._fd

    def write(self, event, route, wait_ms="", hold_ms="", backend_pid="", acquire_id="", detail=""):
        directory = setting("STREAM_RELEASE_EVENT_LOG_DIR")
        if not directory:
            return
        # the pid at every line: a server may fork without os.register_at_fork's hooks running
        # (uWSGI by default), and a worker must not append to its master's file
        fd = self._fd if self._opened == (os.getpid(), directory) else self._open(directory)
        if detail:
            detail = detail.replace('"', "'").replace("\n", " ")
        line = f'{event},{time.time():.6f},{route},{wait_ms},{hold_ms},{backend_pid},{acquire_id},"{detail}"\n'
        data = line.encode()
        while data:  # a regular file takes the whole line but when the disk fills mid-write
            data = data[os.write(fd, data) :]


event_log = _EventLog()
