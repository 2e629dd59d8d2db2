"""The pages that set django-stream-release's switch (STREAM_RELEASE_ALL_STREAMS) beside the
closest peer, django-pg-real-pool, each drawn from one run by `make table`:

- switch_table: a `make bench MATRIX=switch` run (streams: how long each held its connection,
  what the probes met);
- query_cost_table: a `make query-cost` run (a view that does not stream: requests per second
  and p99).
"""

import os

from harness import runinfo, summary
from harness.findings import run_line, verdict

SIGNIFICANT = 0.05  # Wilcoxon's p below this: a change the rounds show, not noise


def is_query_cost_run(run_dir) -> bool:
    return os.path.exists(os.path.join(run_dir, "query_cost_summary.csv"))


def _change(estimate, low, high, p, unit) -> str:
    if p in ("", None):
        return "no change in any round"
    sign = "+" if float(estimate) > 0 else ""
    interval = f"{sign}{estimate} {unit} ({low} to {high})" if low != "" else f"{sign}{estimate} {unit}"
    if float(p) >= SIGNIFICANT:
        return f"within noise: {interval}, p = {p}"
    return f"**{'more' if float(estimate) > 0 else 'less'}**: {interval}, p = {p}"


def query_cost_table(run_dir) -> str:
    info = runinfo.read_json(os.path.join(run_dir, "run.json"))
    rows = summary.read(os.path.join(run_dir, "query_cost_summary.csv"))
    confidence = next((r["rps_change_confidence"] for r in rows if r["rps_change_confidence"]), "")
    out = [
        "# A view that does not stream: the switch, the peer, and neither",
        "",
        run_line(run_dir) + " Regenerate with `make table RUN=<run directory> TABLE=<this file>`.",
        "",
        f"{info['users']} Locust users in a closed loop (each sends its next request when the last is "
        f"answered) against one gunicorn `{info['server']}` worker, a pool of {info['pool_max']} "
        f"connections; {info['rounds']} rounds of {info['seconds']} s, each measuring every view under "
        "every setup, the setups in a random order each round. A change is the setup's against "
        "`no-package` in the same round: requests per second in % (Hodges-Lehmann's estimate, its "
        f"{float(confidence) * 100:.0f} % interval in brackets), the p99 in ms (the median of the rounds' "
        f"differences); p is Wilcoxon's signed-rank test over the rounds, below {SIGNIFICANT} a change the "
        "rounds show, not noise.",
        "",
        "Setups:",
        "",
        *[f"- `{name}`: {text}" for name, text in info["setups"].items()],
        "",
        "Views (benchapp's `/queries/`):",
        "",
        *[f"- `{name}`: `{text.split(': ', 1)[0]}`, {text.split(': ', 1)[1]}" for name, text in info["shapes"].items()],
        "",
        "| view | setup | requests/s | change in requests/s | p50 ms | p99 ms | change in p99 | failed of requests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = r["rps_change_pct"] == ""
        out.append(
            f"| `{r['shape']}` | `{r['setup']}` | {r['rps_p50']} | "
            + (
                "(baseline)"
                if baseline
                else _change(
                    r["rps_change_pct"], r["rps_change_low_pct"], r["rps_change_high_pct"], r["rps_change_p"], "%"
                )
            )
            + f" | {r['p50_ms_p50']} | {r['p99_ms_p50']} | "
            + ("(baseline)" if baseline else _change(r["p99_change_ms"], "", "", r["p99_change_p"], "ms"))
            + f" | {r['failures']} of {r['requests']} |"
        )
    versions = info.get("server_versions", {})
    if versions:
        out += ["", "The servers' packages:", ""]
        for name, packages in versions.items():
            listed = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
            out.append(f"- `{name}`: {listed}")
    return "\n".join(out) + "\n"


def is_switch_run(rows) -> bool:
    """A run with streams both under the switch and not."""
    return {r.get("release_all_streams") for r in rows} >= {"True", "False"}


SWITCH_SUFFIX = "-switch"  # matrix.toml's switch scenarios: <load>-switch, the load with the switch on
PEER = "pg-real-pool"


def fix_of(row) -> str:
    """What gives the stream's connection back: nothing, the view's release, the switch, the peer."""
    if row["release_all_streams"] == "True":
        return "the switch"
    if row["backend"] == PEER:
        return "the peer"
    return "`ReleasingStreamingHttpResponse` in the view" if row["variant"] == "release" else "nothing"


ORDER = {"nothing": 0, "`ReleasingStreamingHttpResponse` in the view": 1, "the switch": 2, "the peer": 3}
SWITCH_COLUMNS = [
    "conn_hold_p50_ms",
    "stream_design_ms",
    "probe_p50_ms",
    "probe_p99_ms",
    "probe_failures",
    "probe_requests",
    "streams_completed",
    "stream_failures",
    "peak_db_backends",
    "lost_writes",
]


def _load_rows(rows):
    """{load: its rows, in the page's order}: a load is a scenario without the switch's suffix."""
    loads = {}
    for r in rows:
        if r["repeat"] == "1":
            loads.setdefault(r["scenario"].removesuffix(SWITCH_SUFFIX), []).append(r)
    backends = list(dict.fromkeys(r["backend"] for r in rows if r["backend"] != PEER)) + [PEER]
    for its in loads.values():
        its.sort(key=lambda r: (r["variant"] == "cursor-hold", backends.index(r["backend"]), ORDER[fix_of(r)]))
    return loads


def _number(value) -> float | None:
    return float(value) if value not in ("", None) else None


def switch_findings(loads) -> list[str]:
    """One line per load: the switch's holds and probe p99 against the view's release, per
    backend, and the peer's."""
    out = []
    for load, rows in loads.items():
        by = {(r["backend"], fix_of(r)): r for r in rows if r["variant"] != "cursor-hold" and r["status"] == "ok"}
        parts = []
        for (backend, fix), r in by.items():
            if fix != "the switch":
                continue
            ref = by.get((backend, "`ReleasingStreamingHttpResponse` in the view"))
            if ref is None:
                continue
            parts.append(
                f"`{backend}`: held {r['conn_hold_p50_ms']} ms under the switch, {ref['conn_hold_p50_ms']} ms "
                f"with the view's release; probe p99 {r['probe_p99_ms']} and {ref['probe_p99_ms']} ms"
            )
        peer = next((r for (b, _), r in by.items() if b == PEER), None)
        if peer is not None:
            parts.append(
                f"the peer (`{PEER}`, `hold`): held {peer['conn_hold_p50_ms']} ms, probe p99 {peer['probe_p99_ms']} ms"
            )
        if parts:
            out.append(f"- **{load}**: " + "; ".join(parts) + ".")
    return out


def switch_table(run_dir, rows) -> str:
    loads = _load_rows(rows)
    out = [
        "# One setting against the closest peer: streams",
        "",
        run_line(run_dir) + " Regenerate with `make table RUN=<run directory> TABLE=<this file>`.",
        "",
        "benchapp's views unchanged: `hold` queries, then returns a plain `StreamingHttpResponse`; "
        "`cursor-hold` streams from one `QuerySet.iterator()` cursor. What gives the connection back: "
        "**nothing**; **`ReleasingStreamingHttpResponse` in the view** (the `release` variant, the "
        "reference); **the switch** (django-stream-release's `STREAM_RELEASE_ALL_STREAMS = True`, no view "
        "changed); **the peer** (django-pg-real-pool's backend, `pg-real-pool`, on the same native pool: the "
        "connection goes back after every query outside an atomic block). The verdict compares "
        "`conn_hold_p50_ms`, the median time a stream's request held a connection, with the stream's "
        "length: **released** at most 10 %, **held** at least 50 %. `lost_writes`: streams answered 200 "
        "whose view's audit row is not in PostgreSQL.",
        "",
        "## What it shows",
        "",
        *switch_findings(loads),
    ]
    for load, its in loads.items():
        out += [
            "",
            f"## {load} (scenarios `{load}` and `{load}{SWITCH_SUFFIX}`)",
            "",
            "| backend | view | what gives it back | verdict | " + " | ".join(f"`{c}`" for c in SWITCH_COLUMNS) + " |",
            "|---|---|---|---|" + "---|" * len(SWITCH_COLUMNS),
        ]
        for r in its:
            values = [(r.get(c) or "–") if r["status"] == "ok" else "–" for c in SWITCH_COLUMNS]
            out.append(
                f"| `{r['backend']}` | `{r['variant']}` | {fix_of(r)} | **{verdict(r)}** | " + " | ".join(values) + " |"
            )
    return "\n".join(out) + "\n"
