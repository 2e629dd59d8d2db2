"""CPU time of the processes a cell starts, sampled while it runs (cpu.csv): what the load
generator, the server and PostgreSQL each cost."""

import csv
import os
import threading
import time

import psutil


FILE = "cpu.csv"


def groups_cpu_s(pgids):
    """{pgid: CPU seconds (user + system) used so far by that process group}: its live
    processes, and the children they have reaped (an ended PostgreSQL backend, a restarted
    worker). One pass over the processes, whatever the number of groups."""
    totals = dict.fromkeys(pgids, 0.0)
    for p in psutil.process_iter():
        try:
            pgid = os.getpgid(p.pid)
            if pgid in totals and p.status() != psutil.STATUS_ZOMBIE:
                t = p.cpu_times()
                totals[pgid] += t.user + t.system + t.children_user + t.children_system
        except (ProcessLookupError, psutil.Error):
            continue
    return totals


class CpuSampler(threading.Thread):
    """Every `interval` seconds, the CPU seconds each named process group has used: cpu.csv."""

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
            writer.writerow(["unix_s", *(f"{name}_cpu_s" for name in self.groups)])
            while True:
                used = groups_cpu_s(self.groups.values())
                writer.writerow([f"{time.time():.3f}", *(f"{used[pgid]:.3f}" for pgid in self.groups.values())])
                f.flush()
                if self.stop_event.wait(self.interval):
                    return


def cores(cpu_rows, name, start, end):
    """Cores `name` used on average between the first sample at or after `start` and the last
    at or before `end` (None with fewer than two samples there)."""
    inside = [r for r in cpu_rows if start <= r["unix_s"] <= end and r.get(f"{name}_cpu_s") not in (None, "")]
    if len(inside) < 2 or inside[-1]["unix_s"] <= inside[0]["unix_s"]:
        return None
    used = float(inside[-1][f"{name}_cpu_s"]) - float(inside[0][f"{name}_cpu_s"])
    return max(used, 0.0) / (inside[-1]["unix_s"] - inside[0]["unix_s"])


def read(cell_dir, name=FILE):
    """A CpuSampler's samples (cpu.csv), unix_s a number; none without the file."""
    path = os.path.join(cell_dir, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{**r, "unix_s": float(r["unix_s"])} for r in csv.DictReader(f)]
