"""The capacity search: a step load of slow streams (Locust's LoadTestShape), stopped once a
step breaks a service objective.

The steps' streams are --step-levels (the harness computes them from capacity_start,
capacity_growth and capacity_max). A step's new streams start over --step-ramp-s seconds (the harness
gives one stream's length: new streams then arrive at the new level's steady rate), and the
step then holds for --step-hold-s. The ProbeUser (fixed_count = 1) runs throughout.

At the end of each step the shape judges it from Locust's own statistics, as the harness
does: the p99 of the probes of its hold against --slo-probe-p99-ms, and the requests failed
since it began against --slo-failures. Those figures
are what Locust has received by then (a probe still in flight is not in them; distributed,
the workers report every few seconds), so the shape runs one more step after the first that
breaks, then stops the test as -t would; the harness judges every step again, exactly, from the request
log. Each step's times go to --steps-file (JSON), rewritten as the steps go.
"""

import json
import time

import _common  # noqa: F401  (registers the project's options and the request log)
from locust import LoadTestShape, events
from locust.runners import MasterRunner
from locust.stats import calculate_response_time_percentile


@events.init_command_line_parser.add_listener
def add_options(parser):
    step = _common.DEFAULTS
    parser.add_argument(
        "--step-levels",
        default="",
        include_in_web_ui=False,
        help="the streams of each step, comma-separated, e.g. 1,2,4,8",
    )
    for name, kind, default, text in (
        ("step-ramp-s", float, 0, "seconds over which a step's new streams start (0: at once)"),
        ("step-hold-s", float, step["capacity_step_s"], "seconds a step holds once its streams have started"),
        ("slo-probe-p99-ms", float, step["slo_probe_p99_ms"], "objective: a step's probe p99, ms"),
        ("slo-failures", int, step["slo_failures"], "objective: a step's failed requests"),
    ):
        parser.add_argument("--" + name, type=kind, default=default, help=f"{text} (default {default})")
    parser.add_argument(
        "--steps-file",
        default="",
        include_in_web_ui=False,
        help="write each step's streams and times (unix s) to this JSON file",
    )


class _Snapshot:
    """Locust's statistics at one moment: the probes' response time histogram and count, and
    the failed requests as the harness counts them (probes, and whole streams)."""

    def __init__(self, stats, probe_path):
        PROBE = (probe_path, "GET")
        probe = stats.entries.get(PROBE)
        self.probe_times = dict(probe.response_times) if probe else {}
        self.probes = probe.num_requests if probe else 0  # failed ones included
        self.failures = sum(
            e.num_failures for (name, kind), e in stats.entries.items() if (name, kind) == PROBE or kind == "STREAM"
        )

    def since(self, earlier):
        """(probes, their p99 in ms or None, failures) between `earlier` and this snapshot."""
        times = {ms: n - earlier.probe_times.get(ms, 0) for ms, n in self.probe_times.items()}
        count = sum(times.values())
        p99 = calculate_response_time_percentile(times, count, 0.99) if count else None
        return self.probes - earlier.probes, p99, self.failures - earlier.failures


class StepLoadShape(LoadTestShape):
    def __init__(self):
        super().__init__()
        self.steps, self.levels, self.broken_at = [], None, None

    def tick(self):
        o = self.runner.environment.parsed_options
        if self.levels is None:
            self.levels = [int(n) for n in o.step_levels.split(",")]
            self._begin(0, o)
        step = self.steps[-1]
        now = time.time()
        if "full_unix" not in step:
            if self.get_current_user_count() >= step["streams"] + 1:  # its streams and the probe
                step["full_unix"] = now
                step["_held"] = _Snapshot(
                    self.runner.stats, self.runner.environment.parsed_options.probe_path
                )  # the probes are judged from here on
                self._write(o)
        elif now - step["full_unix"] >= o.step_hold_s:
            step["end_unix"] = now
            now_stats = _Snapshot(self.runner.stats, self.runner.environment.parsed_options.probe_path)
            probes, p99, _ = now_stats.since(step.pop("_held"))
            failures = now_stats.since(step.pop("_snapshot"))[2]
            step.update(live_probes=probes, live_probe_p99_ms=p99, live_failures=failures)
            if self.broken_at is None and ((p99 is not None and p99 > o.slo_probe_p99_ms) or failures > o.slo_failures):
                self.broken_at = len(self.steps) - 1
            done = len(self.steps) == len(self.levels) or (
                self.broken_at is not None and len(self.steps) - 1 > self.broken_at
            )
            self._write(o)
            if done:
                if isinstance(self.runner, MasterRunner):  # Locust's own quit would cut the workers short
                    _common.stop_then_quit(self.runner)
                return None  # in one process, Locust stops the users within --stop-timeout, then quits
            self._begin(len(self.steps), o)
        step = self.steps[-1]
        new = step["streams"] - (self.steps[-2]["streams"] if len(self.steps) > 1 else 0)
        rate = new / o.step_ramp_s if o.step_ramp_s else new
        return step["streams"] + 1, max(rate, 1)

    def _begin(self, index, o):
        self.steps.append(
            {
                "step": index + 1,
                "streams": self.levels[index],
                "start_unix": time.time(),
                "_snapshot": _Snapshot(self.runner.stats, self.runner.environment.parsed_options.probe_path),
            }
        )
        self._write(o)

    def _write(self, o):
        if o.steps_file:
            with open(o.steps_file, "w") as f:
                json.dump([{k: v for k, v in s.items() if not k.startswith("_")} for s in self.steps], f, indent=1)
