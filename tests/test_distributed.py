"""The multi-machine path, on one machine: the app (with its PostgreSQL), the harness with
Locust's master, and two Locust workers, each in a network namespace of its own with its own
address (ip netns, veth pairs on a bridge), made by this test and removed after it. The
workers ship their requests to the master, whose run's totals are then exactly the sum of the
workers' logs, and agree with what the app recorded of each stream."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import pytest

from harness import ROOT
from harness.results import cellfiles

MATRIX = "smoke-safety"  # two cells: the workers serve one master after the other


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


class Network:
    """Namespaces on one bridge, 10.213.<n>.0/24, with a free <n>; every namespace and link goes
    with close(), after the processes in the namespaces."""

    def __init__(self, names):
        taken = sh("ip", "-4", "-o", "addr").stdout
        self.net = next(f"10.213.{n}" for n in range(100, 250) if f" 10.213.{n}." not in taken)
        self.tag = secrets.token_hex(3)
        self.bridge = f"brb{self.tag}"
        self.namespaces, self.links, self.addresses = [], [], {}
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            self.links.append(self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i, name in enumerate(names, start=2):
                ns, veth = f"bench-{self.tag}-{name}", f"vb{self.tag}{i}"
                sh("ip", "netns", "add", ns)
                self.namespaces.append(ns)
                sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                self.links.append(veth)
                sh("ip", "link", "set", veth, "master", self.bridge, "up")
                address = f"{self.net}.{i}"
                sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                self.addresses[name] = address
        except BaseException:
            self.close()
            raise

    def ns(self, name):
        return f"bench-{self.tag}-{name}"

    def spawn(self, name, args, log):
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), sys.executable, "-m", "harness", *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def processes(self):
        return {ns: sh("ip", "netns", "pids", ns, check=False).stdout.split() for ns in self.namespaces}

    def close(self):
        for pids in self.processes().values():
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ns in self.namespaces:
            sh("ip", "netns", "delete", ns, check=False)
        for link in reversed(self.links):
            sh("ip", "link", "delete", link, check=False)


def counts_by_request(cell):
    """{(type, name): (requests, failures)}: from the cell's request logs, and from Locust's own
    final statistics (the master's, aggregated from the workers' reports)."""
    logged = {}
    for path in sorted(cell.glob("requests*.csv")):
        for r in cellfiles.read(path):
            n, failed = logged.get((r["request_type"], r["name"]), (0, 0))
            logged[(r["request_type"], r["name"])] = (n + 1, failed + bool(r["failure"]))
    final = json.loads((cell / "locust_final.json").read_text())
    return logged, {(e["method"], e["name"]): (e["num_requests"], e["num_failures"]) for e in final}


def _netns_missing():
    if os.geteuid() != 0:
        return "the namespaces need root: run make test as root (as CI does)"
    if shutil.which("ip") is None:
        return "no ip command: apt-get install iproute2"
    return None


def _wait_for(path, text, proc, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert proc.poll() is None, content[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s:\n{content[-3000:]}")


def _stop(proc, sig=signal.SIGINT, timeout=30):
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    reason = _netns_missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("distributed")
    net = Network(["app", "master", "w1", "w2"])
    procs = {}
    try:
        app, master = net.addresses["app"], net.addresses["master"]
        serve_log = tmp / "serve.out"
        procs["app"] = net.spawn(
            "app",
            ["serve", "--bind", app, "--port", "8000", "--log-dir", str(tmp / "serve"), "--set", "seed_rows=2000"],
            open(serve_log, "w"),
        )
        printed = _wait_for(serve_log, "Ctrl-C stops both.", procs["app"], 180)
        database = next(line.split()[1] for line in printed.splitlines() if line.startswith("database:"))
        worker_logs = {}
        for w in ("w1", "w2"):
            worker_logs[w] = tmp / f"{w}.out"
            procs[w] = net.spawn(w, ["worker", "--master", f"{master}:5557"], open(worker_logs[w], "w"))
        out = tmp / "run"
        bench_log = tmp / "bench.out"
        procs["master"] = net.spawn(
            "master",
            [
                "bench",
                "--matrix",
                MATRIX,
                "--out",
                str(out),
                "--host",
                f"http://{app}:8000",
                "--database-url",
                database,
                "--master-bind",
                master,
                "--set",
                "locust_workers=2",
            ],
            open(bench_log, "w"),
        )
        try:
            code = procs["master"].wait(600)
        except subprocess.TimeoutExpired:
            code = "a timeout"
        assert code == 0, bench_log.read_text()[-4000:]
        # the run is over: the workers would wait 5 minutes for another master
        worker_codes = {w: _stop(procs[w], signal.SIGTERM) for w in ("w1", "w2")}
        left = net.processes()
        yield {
            "out": out,
            "net": net,
            "bench_log": bench_log.read_text(),
            "worker_logs": worker_logs,
            "worker_codes": worker_codes,
            "left": left,
            "rows": cellfiles.read(out / "summary.csv"),
        }
    finally:
        for proc in procs.values():
            _stop(proc)
        net.close()


def test_each_worker_ships_its_requests_to_the_master(distributed):
    assert len(distributed["rows"]) == 2
    for row in distributed["rows"]:
        assert row["status"] == "ok", row["error"]
        cell = distributed["out"] / row["backend"] / row["variant"] / row["scenario"] / f"r{row['repeat']}"
        logs = sorted(cell.glob("requests-worker*.csv"))
        assert [p.name for p in logs] == ["requests-worker1.csv", "requests-worker2.csv"]
        assert not (cell / "requests.csv").exists()
        per_worker = [cellfiles.read(p) for p in logs]
        assert all(per_worker), "both workers made requests"


def test_the_totals_are_the_sum_over_the_workers_and_match_the_app(distributed):
    for row in distributed["rows"]:
        cell = distributed["out"] / row["backend"] / row["variant"] / row["scenario"] / f"r{row['repeat']}"
        logged = [r for p in sorted(cell.glob("requests-worker*.csv")) for r in cellfiles.read(p)]
        probes = [r for r in logged if r["name"] == "/probe/"]
        streams = [r for r in logged if r["request_type"] == "STREAM"]
        assert int(row["probe_requests"]) == len(probes) > 0
        assert int(row["probe_failures"]) == sum(1 for r in probes if r["failure"])
        assert int(row["streams_completed"]) == sum(1 for r in streams if not r["failure"]) > 0
        # the app's own record: an audit row per stream it answered 200 (lost_writes counts the missing)
        answered = {
            r["request_id"]
            for r in logged
            if r["request_type"] == "GET" and r["name"].startswith("/stream/") and r["status"] == "200"
        }
        assert int(row["writes_expected"]) == len(answered) > 0
        assert row["lost_writes"] == "0"
        assert row["loadgen_cores"] == "", "the load's CPU is on other machines: not the master's alone"
        logged, locust = counts_by_request(cell)
        assert logged == locust


def test_the_master_started_no_worker_and_said_how_to_start_them(distributed):
    master = distributed["net"].addresses["master"]
    assert f"python -m harness worker --master {master}:5557" in distributed["bench_log"]
    info = json.loads((distributed["out"] / "run.json").read_text())
    assert info["locust_master"] == {"bind": f"{master}:5557", "workers": "remote"}
    assert info["app"]["controlled"] is False and info["app"]["url"].startswith(
        f"http://{distributed['net'].addresses['app']}:"
    )


def test_the_workers_served_every_cell_and_nothing_is_left(distributed):
    """Each worker's wrapper starts Locust's worker again for every cell (both workers' rows are
    in both cells: above); stopped, it leaves no process in its namespace, nor the master in its."""
    for log in distributed["worker_logs"].values():
        text = log.read_text()
        assert text.count("Starting Locust") >= 1 + len(distributed["rows"]), text[-2000:]
    left = {ns: pids for ns, pids in distributed["left"].items() if not ns.endswith("-app") and pids}
    assert left == {}
