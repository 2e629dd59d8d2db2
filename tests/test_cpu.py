"""harness/measure/cpu.py on real processes: a process group's CPU time and its resident memory, as
CpuSampler writes them to cpu.csv and the summary reads them back."""

import os
import subprocess
import sys
import time

import pytest

from harness.measure import cpu

pytestmark = pytest.mark.fast  # starts no server: make test-fast

HOLD_MIB = 64
HOLDER = f"""
import sys, time
held = bytearray({HOLD_MIB} * 1024 * 1024)
for i in range(0, len(held), 4096):
    held[i] = 1  # touched: resident, not only reserved
print("ready", flush=True)
time.sleep(30)
"""


def test_a_groups_memory_is_what_its_processes_hold_and_its_peak_is_read_back(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        cpu_s, system_s, rss = cpu.groups_usage([proc.pid])[proc.pid]
        assert rss >= HOLD_MIB * cpu.MIB and cpu_s > 0 and 0 <= system_s <= cpu_s
        path = tmp_path / cpu.FILE
        start = time.time()
        with cpu.CpuSampler(str(path), {"holder": proc.pid}, interval=0.1):
            time.sleep(0.5)
        rows = cpu.read(str(tmp_path))
        assert len(rows) >= 3 and set(rows[0]) == {"unix_s", "holder_cpu_s", "holder_system_s", "holder_rss_mib"}
        peak = cpu.peak_rss_mib(rows, "holder", start, time.time())
        assert HOLD_MIB <= peak < HOLD_MIB + 100
        assert cpu.peak_rss_mib(rows, "holder", 0, start - 10) is None  # no sample there
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()


SPENDER = """
import os, sys, time
end = time.process_time() + 0.5
while time.process_time() < end:
    if sys.argv[1] == "kernel":
        os.stat("/")  # a system call
    else:
        sum(range(20000))  # a millisecond or so in the interpreter for each look at the clock
"""


def test_the_kernels_part_is_told_apart_from_the_users():
    spent = {}
    for where in ("kernel", "user"):
        proc = subprocess.Popen([sys.executable, "-c", SPENDER, where], start_new_session=True)
        try:
            while True:  # its last figures before it ends
                cpu_s, system_s, _ = cpu.groups_usage([proc.pid])[proc.pid]
                if proc.poll() is not None:
                    break
                spent[where] = (cpu_s, system_s)
                time.sleep(0.05)
        finally:
            proc.wait()
    (kernel_cpu, kernel_system), (user_cpu, user_system) = spent["kernel"], spent["user"]
    assert kernel_system > 0.5 * kernel_cpu and user_system < 0.5 * user_cpu, spent


def test_a_cpu_csv_from_before_memory_was_sampled_has_no_peak():
    rows = [{"unix_s": 1.0, "server_cpu_s": "0.1"}, {"unix_s": 2.0, "server_cpu_s": "0.3"}]
    assert cpu.peak_rss_mib(rows, "server", 0, 3) is None
    assert abs(cpu.cores(rows, "server", 0, 3) - 0.2) < 1e-9
    assert cpu.cores(rows, "server", 0, 3, column="system_s") is None  # nor the kernel's part
