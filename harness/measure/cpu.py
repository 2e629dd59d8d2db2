"""CPU time and resident memory of the processes a cell starts, sampled while it runs (cpu.csv):
what the load generator, the server and PostgreSQL each cost."""

import csv
import os
import threading
import time

import psutil

FILE = "cpu.csv"


MIB = 1024 * 1024


def groups_usage(pgids):
    """{pgid: (CPU seconds used so far, of them in the kernel, resident bytes now)} of each
    process group. CPU: user + system of its live processes and of the children they have
    reaped (an ended PostgreSQL backend, a restarted worker); in the kernel: the system part
    (system calls, page faults). Memory: the live processes' resident set sizes summed, pages
    shared between them (a forked worker's) counted in each. One pass over the processes,
    whatever the number of groups."""
    totals = {pgid: [0.0, 0.0, 0] for pgid in pgids}
    for p in psutil.process_iter():
        try:
            pgid = os.getpgid(p.pid)
            if pgid in totals and p.status() != psutil.STATUS_ZOMBIE:
                t = p.cpu_times()
                totals[pgid][0] += t.user + t.system + t.children_user + t.children_system
                totals[pgid][1] += t.system + t.children_system
                totals[pgid][2] += p.memory_info().rss
        except (ProcessLookupError, psutil.Error):
            continue
    return {pgid: tuple(used) for pgid, used in totals.items()}


def groups_cpu_s(pgids):
    """{pgid: CPU seconds (user + system) used so far by that process group} (groups_usage)."""
    return {pgid: cpu_s for pgid, (cpu_s, _, _) in groups_usage(pgids).items()}


class CpuSampler(threading.Thread):
    """Every `interval` seconds, the CPU seconds each named process group has used, of them in
    the kernel, and the memory it holds: cpu.csv, columns `<name>_cpu_s`, `<name>_system_s` and
    `<name>_rss_mib`."""

    def __init__(self, path, groups, interval=1.0):
        super().__init__(name="cpu", daemon=True)
        self.path, self.groups, self.interval = path, groups, interval
        self.stop_event = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(10)

    def run(self):
        with open(self.path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                [
                    "unix_s",
                    *(f"{name}_cpu_s" for name in self.groups),
                    *(f"{name}_system_s" for name in self.groups),
                    *(f"{name}_rss_mib" for name in self.groups),
                ]
            )
            while True:
                used = groups_usage(self.groups.values())
                writer.writerow(
                    [
                        f"{time.time():.3f}",
                        *(f"{used[pgid][0]:.3f}" for pgid in self.groups.values()),
                        *(f"{used[pgid][1]:.3f}" for pgid in self.groups.values()),
                        *(f"{used[pgid][2] / MIB:.1f}" for pgid in self.groups.values()),
                    ]
                )
                f.flush()
                if self.stop_event.wait(self.interval):
                    return


def cores(cpu_rows, name, start, end, column="cpu_s"):
    """Cores `name` used on average between the first sample at or after `start` and the last
    at or before `end` (None with fewer than two samples there); `column="system_s"`: of them,
    in the kernel (None in a cpu.csv from before that was sampled)."""
    column = f"{name}_{column}"
    inside = [r for r in cpu_rows if start <= r["unix_s"] <= end and r.get(column) not in (None, "")]
    if len(inside) < 2 or inside[-1]["unix_s"] <= inside[0]["unix_s"]:
        return None
    used = float(inside[-1][column]) - float(inside[0][column])
    return max(used, 0.0) / (inside[-1]["unix_s"] - inside[0]["unix_s"])


def peak_rss_mib(cpu_rows, name, start, end):
    """The most resident memory `name`'s processes held together at a sample between `start` and
    `end`, MiB (None without a sample there, or in a cpu.csv from before memory was sampled)."""
    held = [
        float(r[f"{name}_rss_mib"])
        for r in cpu_rows
        if start <= r["unix_s"] <= end and r.get(f"{name}_rss_mib") not in (None, "")
    ]
    return max(held, default=None)


def read(cell_dir, name=FILE):
    """A CpuSampler's samples (cpu.csv), unix_s a number; none without the file."""
    path = os.path.join(cell_dir, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{**r, "unix_s": float(r["unix_s"])} for r in csv.DictReader(f)]
