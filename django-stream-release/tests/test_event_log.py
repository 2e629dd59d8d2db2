"""stream_release.event_log: every line whole and in its place, through a kill, an exit, a new
map, threads and the garbage collector writing in the middle of a line."""

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from stream_release import event_log
from stream_release.event_log import EVENT_LOG_HEADER


def a_process(directory, body):
    """Run `body` in a new Python process whose event log goes to `directory`; its exit status."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from django.conf import settings
        settings.configure(STREAM_RELEASE_EVENT_LOG_DIR={str(directory)!r})
        from stream_release.event_log import event_log
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], timeout=60).returncode


def ids(path):
    return [int(row["acquire_id"]) for row in event_log.read(path)]


def test_a_killed_process_loses_no_line_and_a_reader_skips_the_room_it_left(tmp_path):
    status = a_process(
        tmp_path,
        """
        from stream_release import event_log as module
        module.ROOM = 1000  # a map for about 30 lines: the kill comes after many a new one
        for n in range(1000):
            event_log.write("acquire", "stream", acquire_id=n)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    assert status == -signal.SIGKILL
    (path,) = tmp_path.glob("accounting-*.csv")
    assert ids(path) == list(range(1000))
    assert path.read_bytes().endswith(b"\0")  # the room for the next lines, never trimmed


def test_a_process_that_exits_leaves_only_its_lines(tmp_path):
    assert a_process(tmp_path, 'event_log.write("acquire", "stream", acquire_id=1)') == 0
    (path,) = tmp_path.glob("accounting-*.csv")
    text = path.read_text()
    assert text.startswith(EVENT_LOG_HEADER) and text.count("\n") == 2 and text.endswith('1,""\n')


def test_a_line_a_finalizer_writes_at_exit_is_trimmed_after_too(tmp_path):
    """As a persistent connection's return does, when weakref.finalize's own exit hook runs it."""
    body = """
    import weakref
    class Wrapper: pass
    kept = Wrapper()  # alive until the interpreter exits
    weakref.finalize(kept, event_log.write, "return", "stream", acquire_id=2)
    event_log.write("acquire", "stream", acquire_id=1)
    """
    assert a_process(tmp_path, body) == 0
    (path,) = tmp_path.glob("accounting-*.csv")
    assert ids(path) == [1, 2] and b"\0" not in path.read_bytes()


@pytest.fixture
def log_dir(tmp_path, settings, monkeypatch):
    """This process's event log in tmp_path, with room for about two lines at a time: each few
    lines map the next part of the file."""
    monkeypatch.setattr(event_log, "ROOM", 100)
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    yield tmp_path
    event_log.event_log.close()


def test_lines_past_the_room_of_one_map_go_into_the_next(log_dir):
    for n in range(500):
        event_log.event_log.write("acquire", "stream", acquire_id=n, detail="x" * (n % 7) * 30)
    (path,) = log_dir.glob("accounting-*.csv")
    assert ids(path) == list(range(500))


def test_threads_writing_at_once_lose_no_line(log_dir):
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:

        def write(thread):
            for n in range(2000):
                # lines of 40 to 80 bytes: a short one fits where a long one found no room
                event_log.event_log.write("acquire", "stream", acquire_id=thread * 10000 + n, detail="x" * (n % 5) * 10)

        threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    (path,) = log_dir.glob("accounting-*.csv")
    written = ids(path)
    assert sorted(written) == sorted(t * 10000 + n for t in range(4) for n in range(2000))
    for t in range(4):  # each thread's own lines in the order it wrote them
        assert [i for i in written if i // 10000 == t] == [t * 10000 + n for n in range(2000)]


def test_a_line_written_by_the_garbage_collector_inside_another_line_is_whole(log_dir):
    """As a finalizer of a persistent connection does, or benchapp's GC pause timing: the
    collector runs at an allocation, anywhere in this thread's write."""
    in_gc = []

    def callback(phase, info):
        if phase == "stop" and len(in_gc) < 3000:
            in_gc.append(len(in_gc))
            event_log.event_log.write("gc", "gc", acquire_id=100000 + len(in_gc))

    threshold = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)  # a collection at almost every allocation
    try:
        for n in range(3000):
            event_log.event_log.write("acquire", "stream", acquire_id=n, detail="a detail")
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(callback)
    (path,) = log_dir.glob("accounting-*.csv")
    written = ids(path)
    assert in_gc, "the collector never ran during the writes"
    assert [i for i in written if i < 100000] == list(range(3000))
    assert len(written) == 3000 + len(in_gc)


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no os.posix_fallocate on this platform")
def test_a_map_that_could_not_be_made_leaves_the_next_line_to_open_the_file_again(log_dir, monkeypatch):
    """A full disk, say, when the next part of the file is mapped: that line's event fails with
    the error, and the lines after it are written once there is room again."""
    for n in range(3):
        event_log.event_log.write("acquire", "stream", acquire_id=n)
    fallocate = os.posix_fallocate

    def full(*args):
        monkeypatch.setattr(os, "posix_fallocate", fallocate)  # once
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left"):
        for n in range(3, 100):  # until the map is full
            event_log.event_log.write("acquire", "stream", acquire_id=n)
    lost = n
    for n in range(100, 103):
        event_log.event_log.write("acquire", "stream", acquire_id=n)
    (path,) = log_dir.glob("accounting-*.csv")
    assert ids(path) == [i for i in range(103) if i != lost and not lost < i < 100]


def test_a_file_left_by_a_killed_process_of_the_same_pid_goes_on_after_its_last_whole_line(log_dir):
    path = log_dir / f"accounting-{os.getpid()}.csv"
    path.write_bytes(EVENT_LOG_HEADER.encode() + b'acquire,1.0,stream,,,,1,""\nacquire,2.0,str' + b"\0" * 5000)
    event_log.event_log.write("acquire", "stream", acquire_id=2)
    event_log.event_log.close()
    assert ids(path) == [1, 2]
    assert b"\0" not in path.read_bytes()
