"""The pages that set django-stream-release's switch (STREAM_RELEASE_ALL_STREAMS) beside the
closest peer, django-pg-real-pool, each drawn from one run by `make table`:

- switch_table: a `make bench MATRIX=switch` run (streams: how long each held its connection,
  what the probes met);
- query_cost_table: a `make query-cost` run (a view that does not stream: requests per second
  and p99).
"""

import os
import statistics
from dataclasses import dataclass

from harness.results import cellfiles, runinfo
from harness.results.findings import run_line, verdict
from harness.spec import matrix

SIGNIFICANT = 0.05  # Wilcoxon's p below this: a change the rounds show, not noise


def _change(estimate, low, high, p, unit) -> str:
    if p in ("", None):
        return "no change in any round"
    sign = "+" if float(estimate) > 0 else ""
    interval = f"{sign}{estimate} {unit} ({low} to {high})" if low != "" else f"{sign}{estimate} {unit}"
    if float(p) >= SIGNIFICANT:
        return f"within noise: {interval}, p = {p}"
    return f"**{'more' if float(estimate) > 0 else 'less'}**: {interval}, p = {p}"


def query_cost_table(run_dir) -> str:
    info = runinfo.read_json(os.path.join(run_dir, runinfo.RUN_FILE))
    rows = cellfiles.read(os.path.join(run_dir, "query_cost_summary.csv"))
    confidence = next((r["rps_change_confidence"] for r in rows if r["rps_change_confidence"]), "")
    out = [
        "# A view that does not stream: the switch, the peer, and neither",
        "",
        run_line(run_dir) + " Regenerate with `make table RUN=<run directory> TABLE=<this file>`.",
        "",
        f"{info['users']} Locust users in a closed loop (each sends its next request when the last is "
        f"answered) against server `{info['server']}` with {info.get('workers', 1)} worker process"
        f"{'es' if info.get('workers', 1) > 1 else ''}, a pool of {info['pool_max']} connections each; {info['rounds']} rounds of {info['seconds']} s, each measuring every view under "
        "every setup, the setups in a random order each round. Requests per second count the answered "
        "ones; p50 and p99 are Locust's, which files response times to the millisecond below 100 ms, "
        "to 10 ms below 1 s and coarser above; each is the median of the rounds. A change is the setup's against "
        "`no-package` in the same round: requests per second in % (Hodges-Lehmann's estimate, its "
        f"{float(confidence) * 100:.0f} % interval in brackets), the p99 in ms (the median of the rounds' "
        f"differences); p is Wilcoxon's signed-rank test over the rounds, below {SIGNIFICANT} a change the "
        "rounds show, not noise. The page makes a dozen such tests: about one in twenty differences of "
        "nothing passes for a change, and the A/A row (`no-package-again`, the baseline in a second server) "
        "shows how large a difference two identical servers show. On a view that does not stream the switch "
        "does nothing: what `switch` measures is the middleware's own cost.",
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


def peers_of(info: dict) -> frozenset[str]:
    """The backends that gave the connection back after every query (gives_back), as the run's
    own matrix file declared them (run.json's matrix_file); matrix.toml's for a run without it."""
    declared = (info.get("matrix_file") or {}).get("backends")
    if declared is None:
        return frozenset(name for name, b in matrix.load().backends.items() if b.per_query)
    return frozenset(name for name, b in declared.items() if b.get("gives_back") == "per-query")


def fix_of(row, peers: frozenset[str]) -> str:
    """What gives the stream's connection back: nothing, the view's release, the switch, the peer."""
    if row["release_all_streams"] == "True":
        return "the switch"
    if row["backend"] in peers:
        return "the peer"
    return "`ReleasingStreamingHttpResponse` in the view" if row["variant"] == "release" else "nothing"


ORDER = {"nothing": 0, "`ReleasingStreamingHttpResponse` in the view": 1, "the switch": 2, "the peer": 3}
REFERENCE = "`ReleasingStreamingHttpResponse` in the view"
# medians over the repeats; conn_hold_max_ms and streams_pinned say whether a body held one
SWITCH_COLUMNS = [
    "conn_hold_p50_ms",
    "conn_hold_max_ms",
    "stream_design_ms",
    "streams_pinned",
    "probe_p50_ms",
    "probe_p99_ms",
    "probe_failures",
    "streams_completed",
    "stream_failures",
    "peak_db_backends",
    "lost_writes",
]


@dataclass
class Cell:
    """One cell of the run over its repeats (the ones that ran), and what gives its connection back."""

    rows: list
    fix: str

    @property
    def first(self):
        return self.rows[0]

    def median(self, column) -> float | None:
        values = [float(r[column]) for r in self.rows if r.get(column) not in ("", None)]
        return statistics.median(values) if values else None

    def spread(self, column) -> tuple[float, float] | None:
        values = [float(r[column]) for r in self.rows if r.get(column) not in ("", None)]
        return (min(values), max(values)) if values else None

    def shown(self, column) -> str:
        value = self.median(column)
        if value is None:
            return "–"
        low, high = self.spread(column)
        text = f"{value:g}"
        return text if low == high else f"{text} ({low:g}–{high:g})"

    def verdict(self) -> str:
        medians = {c: self.median(c) for c in SWITCH_COLUMNS}
        row = {**self.first, **{c: "" if v is None else f"{v:g}" for c, v in medians.items()}}
        return verdict(row)


def _cells(rows, peers):
    """{load: [Cell]} in the page's order: a load is a scenario without the switch's suffix."""
    by = {}
    for r in rows:
        if r["status"] == "ok":
            by.setdefault(r["cell"], []).append(r)
    loads = {}
    for its in by.values():
        loads.setdefault(its[0]["scenario"].removesuffix(SWITCH_SUFFIX), []).append(Cell(its, fix_of(its[0], peers)))
    backends = sorted(dict.fromkeys(r["backend"] for r in rows), key=lambda b: b in peers)
    for cells in loads.values():
        cells.sort(
            key=lambda c: (
                c.first["variant"] == "cursor-hold",
                backends.index(c.first["backend"]),
                ORDER[c.fix],
            )
        )
    return loads


def _against_reference(cell, ref) -> str:
    """The switch's (or the peer's) probe p99 against the view's release, over the repeats."""
    mine, theirs = cell.spread("probe_p99_ms"), ref.spread("probe_p99_ms")
    if mine is None or theirs is None:
        return ""
    if len(cell.rows) < 2 or len(ref.rows) < 2:
        return "one repeat: no noise to judge against"
    if mine[0] > theirs[1]:
        return "**above** every repeat of the view's release"
    if mine[1] < theirs[0]:
        return "below every repeat of the view's release"
    return "within the repeats' range of the view's release"


def switch_findings(loads) -> list[str]:
    """Per load and backend, the switch's and the peer's hold and probe p99 against the view's
    release."""
    out = []
    for load, cells in loads.items():
        by = {(c.first["backend"], c.fix): c for c in cells if c.first["variant"] != "cursor-hold"}
        refs = {b: c for (b, fix), c in by.items() if fix == REFERENCE}
        reference = refs.get("native-pool") or next(iter(refs.values()), None)
        for (backend, fix), cell in by.items():
            ref = refs.get(backend) if fix == "the switch" else reference if fix == "the peer" else None
            if ref is None:
                continue
            against = _against_reference(cell, ref)
            out.append(
                f"- {load}, `{backend}`, {fix}: **{cell.verdict()}**; held {cell.shown('conn_hold_p50_ms')} ms "
                f"(the view's release: {ref.shown('conn_hold_p50_ms')} ms"
                + (f" on `{ref.first['backend']}`" if ref.first["backend"] != backend else "")
                + f"); probe p99 {cell.shown('probe_p99_ms')} ms against {ref.shown('probe_p99_ms')} ms"
                + (f", {against}" if against else "")
                + "."
            )
        for c in cells:
            if c.first["variant"] == "cursor-hold":
                out.append(
                    f"- {load}, `{c.first['backend']}`, `cursor-hold`, {c.fix}: **{c.verdict()}** "
                    f"(its longest hold {c.shown('conn_hold_max_ms')} ms, {c.shown('streams_pinned')} streams "
                    f"pinned, probe p99 {c.shown('probe_p99_ms')} ms): a cursor read across chunks is given back "
                    "by neither."
                )
    return out


def switch_table(run_dir, rows) -> str:
    loads = _cells(rows, peers_of(runinfo.read_json(os.path.join(run_dir, runinfo.RUN_FILE))))
    repeats = max(int(r["repeat"]) for r in rows)
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
        "connection goes back after every query outside an atomic block).",
        "",
        f"Each number is the median of the cell's {repeats} repeats"
        + (", the lowest and highest in brackets" if repeats > 1 else "")
        + ". `conn_hold_p50_ms` is the median over checkouts of the time a stream's request held a "
        "connection: the peer checks one out per query, the others one per request; `conn_hold_max_ms` is the longest. The verdict compares them with the stream's length "
        "(`stream_design_ms`): **released** at most 10 %, **held** at least 50 %; **released, then held by "
        "the body** when the view's connection went back and the body held another for the stream "
        "(the detector's `streams_pinned`). `lost_writes`: streams answered 200 whose view's audit row is "
        "not in PostgreSQL. Probe p99 is judged against the view's release on the same backend (the peer: "
        "on `native-pool`, the pool it runs on): within or beyond the range of its repeats.",
        "",
        "## What it shows",
        "",
        *switch_findings(loads),
    ]
    for load, cells in loads.items():
        out += [
            "",
            f"## {load} (scenarios `{load}` and `{load}{SWITCH_SUFFIX}`)",
            "",
            "| backend | view | what gives it back | verdict | " + " | ".join(f"`{c}`" for c in SWITCH_COLUMNS) + " |",
            "|---|---|---|---|" + "---|" * len(SWITCH_COLUMNS),
        ]
        for c in cells:
            out.append(
                f"| `{c.first['backend']}` | `{c.first['variant']}` | {c.fix} | **{c.verdict()}** | "
                + " | ".join(c.shown(col) for col in SWITCH_COLUMNS)
                + " |"
            )
    return "\n".join(out) + "\n"
