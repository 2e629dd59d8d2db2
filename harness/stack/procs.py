"""Child processes that always end: each runs in its own session (process group), and
stopping signals the whole group, then kills whatever is left. Should the command itself die
without stopping them, its guardian (harness/stack/guard.py) kills them."""

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil

import harness
from harness import ROOT, CellError

_guardian = None
_guardian_lock = threading.RLock()  # cells side by side start and stop processes from threads of their own


def _start_guardian():
    """This command's guardian, started the first time."""
    global _guardian
    with _guardian_lock:
        if _guardian is None or _guardian.poll() is not None:
            _guardian = subprocess.Popen(
                [sys.executable, "-m", "harness.stack.guard"],
                stdin=subprocess.PIPE,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                text=True,
            )
        return _guardian


def guard(kind, value, done=False):
    """Tell this command's guardian to look after a process group or directory (kind "group"
    or "dir"), or that it is gone (done=True)."""
    if done and (_guardian is None or _guardian.poll() is not None):
        return  # nothing to forget
    try:
        with _guardian_lock:  # one whole line at a time
            _start_guardian().stdin.write(f"{'done ' if done else ''}{kind} {value}\n")
            _guardian.stdin.flush()
    except OSError:  # it died: nothing left to tell
        pass


def raise_fd_limit():
    """Let this process and everything it starts (Locust, gunicorn) open as many files as the
    system allows: a stream is a socket on each side, and a soft limit of 1024 is common."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def spawn(cmd, log_path, env=None, cwd=None, user=None):
    """Start `cmd` in a new session; output goes to log_path (None: this terminal)."""
    log = open(log_path, "ab") if log_path is not None else None
    try:
        kwargs = {}
        if user is not None:
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        _start_guardian()  # first: nothing may run unguarded
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **kwargs,
        )
        try:
            guard("group", proc.pid)
        except BaseException:  # interrupted before the caller could track it
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return proc
    finally:
        if log is not None:
            log.close()


def stop(proc, sig=signal.SIGTERM, timeout=10.0):
    """Send `sig` to the process group, wait up to `timeout`, then SIGKILL the group."""
    if proc is None:
        return None
    interrupted = None
    _signal_group(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    except KeyboardInterrupt as exc:  # asked again to stop: stop harder, then go on unwinding
        interrupted = exc
    _signal_group(proc.pid, signal.SIGKILL)
    code = proc.wait()
    _wait_group_gone(proc.pid, 5.0)
    forget(proc)
    if interrupted is not None:
        raise interrupted
    return code


def forget(proc):
    """`proc`'s group has ended by itself: the guardian need not look after it any more."""
    guard("group", proc.pid, done=True)


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_members(pgid):
    """Live (non-zombie) processes in the process group `pgid`."""
    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _wait_group_gone(pgid, timeout):
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.05)


def wait_group_exit(pgid, timeout) -> bool:
    """Let the processes of group `pgid` end by themselves (a parent may exit before its
    children finish writing), for up to `timeout` seconds; True if they all did."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_ready(proc, ready, what, log_path, timeout):
    """Poll `ready()` until it returns something other than None, and return that; fail at
    once if `proc` exits, or after `timeout` seconds, quoting the end of its log."""
    deadline = time.monotonic() + timeout
    while True:
        harness.check_stop()
        result = ready()
        if result is not None:
            return result
        if proc.poll() is not None:
            raise CellError(f"{what} exited with {proc.returncode}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise CellError(f"{what} not ready after {timeout:.0f}s:\n{tail(log_path)}")
        time.sleep(0.05)


def tail(path, lines=15):
    if path is None:
        return "(output went to the terminal)"
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


class Service:
    """A process run from a temporary directory: `with Service(...) as handle:` starts it
    (start() returns the handle, and sets self.proc and self.tmp), and stopping signals its
    group with stop_signal, then kills what is left, then removes the directory."""

    stop_signal = signal.SIGTERM
    stop_timeout = 10.0
    tmp = proc = None

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        raise NotImplementedError

    def make_tmp(self, prefix):
        """The service's temporary directory (self.tmp), removed by stop() or the guardian."""
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        guard("dir", self.tmp)
        return self.tmp

    def stop(self):
        try:
            if self.proc is not None:
                stop(self.proc, self.stop_signal, timeout=self.stop_timeout)
                self.proc = None
        finally:
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                guard("dir", self.tmp, done=True)
                self.tmp = None
