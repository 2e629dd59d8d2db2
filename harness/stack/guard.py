"""The guardian of the processes a command starts, for when the command dies without stopping
them (SIGKILL, the OOM killer, a crash): it then kills them and removes their temporary
directories, so that no PostgreSQL or gunicorn outlives the run.

procs.spawn() starts one guardian per command (`python -m harness.stack.guard`) and tells it, on its
stdin, each process group and directory to look after ("group 1234", "dir /tmp/bench-pg-x")
and each one already stopped or removed ("done group 1234", "done dir ..."). The pipe closes
when the command exits, however it exits; the guardian then SIGKILLs every group it still
looks after and removes every such directory. After a normal stop there is none.
"""

import os
import shutil
import signal
import sys


def main():
    # a Ctrl-C in the terminal reaches the whole foreground group: the guardian outlives it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched = {"group": set(), "dir": set()}
    for line in sys.stdin:
        done = line.startswith("done ")
        kind, _, value = line.removeprefix("done ").rstrip("\n").partition(" ")  # a path may have spaces
        if kind in watched and value:
            (watched[kind].discard if done else watched[kind].add)(value)
    for pgid in watched["group"]:
        try:
            os.killpg(int(pgid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass
    for path in watched["dir"]:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
