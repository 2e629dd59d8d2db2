"""The throwaway cluster's own record of the app's sessions (postgres.log): every session of the
app's role opened and closed, exactly, from `log_connections` and `log_disconnections` lines in
the pinned `LINE_PREFIX`. From it, a cell's most sessions open at once and the sessions it
opened; the sampler's 10 Hz view of pg_stat_activity (timeline.csv) stays as a cross-check, and
is all there is on an external server.

A session PostgreSQL authorized and then refused for want of slots (a FATAL from its pid, next)
never opened. A session still open when the server restarts (the pg-restart fault) ends there.
"""

import datetime as dt
import functools
import os
import re
from dataclasses import dataclass

# what postgresql.conf's log_line_prefix is pinned to (harness/stack/postgres.py LOG_SETTINGS): the
# time to the millisecond, in log_timezone (UTC), and the backend's pid
LINE_PREFIX = "%m [%p] "
LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[(\d+)\] (\w+):  (.*)")
AUTHORIZED = re.compile(r"connection authorized: user=(\S+) database=(\S+)")
DISCONNECTED = re.compile(r"disconnection: session time: \S+ user=(\S+) database=(\S+)")
READY = "database system is ready to accept connections"
# a FATAL right after authorization that means the session was refused, not ended
REFUSED = ("too many clients", "reserved for", "too many connections for")


@dataclass
class Session:
    pid: str
    opened: float  # unix seconds
    closed: float | None = None  # None: still open at the log's end
    refused: bool = False


def _unix(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC).timestamp()


def sessions(path, user: str, database: str | None = None) -> list[Session] | None:
    """Every session of `user` (on `database`, if given) in the log, in the order PostgreSQL
    wrote them; None without the log. Read once for each state of the file: a run's log is
    asked for by every cell's summary and again by each of its plots."""
    if not path or not os.path.exists(path):
        return None
    stat = os.stat(path)
    return _read(str(path), stat.st_size, stat.st_mtime_ns, user, database)


@functools.lru_cache(maxsize=4)
def _read(path, size, mtime_ns, user, database) -> list[Session]:
    found, live = [], {}  # live: pid -> its session, until it ends
    with open(path, errors="replace") as f:
        for line in f:
            match = LINE.match(line)
            if match is None:
                continue
            stamp, pid, level, message = match.groups()
            if level == "LOG" and (m := AUTHORIZED.match(message)):
                if m[1] == user and database in (None, m[2]):
                    live[pid] = Session(pid, _unix(stamp))
                    found.append(live[pid])
            elif level == "LOG" and DISCONNECTED.match(message):
                if pid in live:
                    live.pop(pid).closed = _unix(stamp)
            elif level == "FATAL" and pid in live:
                session = live.pop(pid)
                session.closed, session.refused = _unix(stamp), any(r in message for r in REFUSED)
            elif level == "LOG" and READY in message:
                for session in live.values():
                    session.closed = _unix(stamp)
                live.clear()
    return found


def peak(found: list[Session], start: float, end: float) -> int:
    """The most sessions open at once within [start, end], those opened before it included: the
    sessions' openings and closings replayed in time order (series)."""
    highest = 0
    for t, open_now in series(found):
        if t > end:
            break
        highest = max(highest, open_now) if t >= start else open_now  # before: what the window opens with
    return highest


def opened(found: list[Session], start: float, end: float) -> int:
    """Sessions opened within [start, end], not counting those refused for want of slots."""
    return sum(1 for s in found if start <= s.opened <= end and not s.refused)


def series(found: list[Session]) -> list[tuple[float, int]]:
    """[(unix s, sessions open)] after every opening and closing, closings first at the same
    millisecond: for peak() and the timeline plots."""
    changes = sorted(
        [(s.opened, 1) for s in found if not s.refused]
        + [(s.closed, -1) for s in found if not s.refused and s.closed is not None]
    )
    open_now, out = 0, []
    for t, change in changes:
        open_now += change
        out.append((t, open_now))
    return out
