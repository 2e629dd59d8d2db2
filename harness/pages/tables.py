"""Tables drawn from a run's summary.csv (or a capacity run's capacity.csv), in Markdown,
saying which run they come from: `make table`."""

import json
import os
import statistics

from harness import UsageError
from harness.pages import switch_pages
from harness.results import cellfiles, paired, runinfo
from harness.results.findings import run_line, verdict


def _rows(run_dir):
    path = os.path.join(run_dir, "summary.csv")
    if not os.path.exists(path):
        raise UsageError(f"RUN={run_dir} has no summary.csv: name a run directory under results/")
    return cellfiles.read(path)


# the kinds of run make table has no page for, and where their results are
UNDRAWN = {
    "peer": "in peer.csv",
    "detector-cost": "in detector_cost.csv",
    "release-cost": "in release_cost.csv and release_cost.md",
}


def table(run_dir, scenario=None) -> str:
    """The capacity table for a capacity run; the query-cost page for a query-cost run; the
    overhead table for a run with cells both instrumented and not; the switch page for a run
    with streams both under the switch and not; the servers table for a run under more than one
    server; else the release table."""
    kind = runinfo.kind_of(run_dir)
    if kind in UNDRAWN:
        raise UsageError(f"RUN={run_dir} is a {kind} run: its results are {UNDRAWN[kind]}; make table draws the others")
    if kind == "query-cost":
        return switch_pages.query_cost_table(run_dir)
    if kind == "capacity":
        return capacity_table(run_dir)
    rows = _rows(run_dir)
    if {r.get("instrument") for r in rows} == {"True", "False"}:
        return overhead_table(run_dir, rows)
    if switch_pages.is_switch_run(rows):
        return switch_pages.switch_table(run_dir, rows)
    if len({r.get("server") or "gevent" for r in rows}) > 1:
        return servers_table(run_dir, rows)
    return release_table(run_dir, scenario, rows)


def buffered(row) -> str:
    """Did the body come all at once? stream_body_p50_ms (a stream's first byte to its last)
    against the stream's length by design: a waiting queue before the first byte is not it."""
    if row["status"] != "ok" or not row.get("stream_body_p50_ms") or not row.get("stream_design_ms"):
        return "–"
    return (
        "**buffered whole**" if float(row["stream_body_p50_ms"]) <= 0.1 * float(row["stream_design_ms"]) else "streamed"
    )


def servers_table(run_dir, rows=None) -> str:
    """Per server, backend and variant: whether the stream pins its connection, whether the body
    was buffered before its first byte, what the probes met, what was left open after."""
    rows = rows if rows is not None else _rows(run_dir)
    cols = [
        "stream_headers_p50_ms",
        "stream_ttfb_p50_ms",
        "stream_body_p50_ms",
        "stream_total_p50_ms",
        "conn_hold_p50_ms",
        "streams_pinned",
        "streams_completed",
        "probe_p99_ms",
        "probe_failures",
        "probe_requests",
        "peak_db_backends",
        "leaked_conns",
        "server_cores",
        "server_rss_peak_mib",
    ]
    several = len({r["scenario"] for r in rows}) > 1
    cols += [c for c in ("abort_conns_held", "abort_conns_back_max_ms") if any(r.get(c) for r in rows)]  # client-abort
    out = [
        "# Servers: does moving to threads or to ASGI give the connection back?",
        "",
        run_line(run_dir) + " Regenerate with `make table RUN=<run directory> TABLE=<this file>`.",
        "",
        "**Pins**: the verdict of `conn_hold_p50_ms` against the stream's length (**released** at most "
        "10 %, **held** at least 50 %). **Body**: **buffered whole** when the first byte came only "
        "with the last (`stream_body_p50_ms`, a stream's first byte to its last, at most 10 % of its length "
        "by design; the wait before the first byte, `stream_ttfb_p50_ms`, may be a queue). "
        "`stream_headers_p50_ms`: when the status line and headers came. `server_rss_peak_mib`: the server's "
        "resident memory at its highest. Under client-abort, `abort_conns_back_max_ms`: the longest time from "
        "the clients leaving to the return of a connection a stream held then. `leaked_conns`: "
        "connections still in use or open in PostgreSQL beyond what the pool keeps, after the load "
        "had ended and the cell's settle time passed.",
        "",
        "| server | backend | variant | "
        + ("scenario | " if several else "")
        + "pins | body | "
        + " | ".join(f"`{c}`" for c in cols)
        + " |",
        "|---|---|---|" + ("---|" if several else "") + "---|---|" + "---|" * len(cols),
    ]
    for r in (r for r in rows if r["repeat"] == "1"):
        values = [r.get(c, "") if r["status"] == "ok" else "" for c in cols]
        out.append(
            f"| `{r.get('server') or 'gevent'}` | `{r['backend']}` | `{r['variant']}` | "
            + (f"`{r['scenario']}` | " if several else "")
            + f"**{verdict(r)}** | {buffered(r)} | "
            + " | ".join(v or "–" for v in values)
            + " |"
        )
    return "\n".join(out) + "\n"


def release_table(run_dir, scenario=None, rows=None) -> str:
    rows = rows if rows is not None else _rows(run_dir)
    scenarios = [s for s in dict.fromkeys(r["scenario"] for r in rows)]
    scenario = scenario or next((s for s in scenarios if s != "burst"), scenarios[0])
    picked = [r for r in rows if r["scenario"] == scenario and r["repeat"] == "1"]
    backends = list(dict.fromkeys(r["backend"] for r in picked))
    variants = list(dict.fromkeys(r["variant"] for r in picked))
    by = {(r["backend"], r["variant"]): r for r in picked}
    audited = any(r.get("writes_expected") for r in picked)  # runs before lost_writes lack it
    out = _release_head(run_dir, scenario, variants, audited)
    for b in backends:
        cells = [_release_cell(by.get((b, v)), audited) for v in variants]
        out.append(f"| `{b}` | " + " | ".join(cells) + " |")
    out += _burst_section(rows)
    return "\n".join(out) + "\n"


def _release_head(run_dir, scenario, variants, audited) -> list[str]:
    """The release table's lines up to its first row: its title, the run it comes from, what the
    verdicts mean, what each cell holds, and the table's head, a column per variant."""
    return [
        "# Release techniques by backend",
        "",
        run_line(run_dir) + " Regenerate with `make table RUN=<run directory> TABLE=<this file>`.",
        "",
        "Verdicts compare the median time a streaming request held its connection "
        "(`conn_hold_p50_ms`) with the stream's length: **released** at most 10 %, **held** at "
        "least 50 %; **held, not returned in the cell**: the connection outlived the request "
        "(persistent connections).",
        "",
        f"## Does the variant give the connection back? (scenario `{scenario}`)",
        "",
        "Each cell: the verdict, then `conn_hold_p50_ms` / `stream_design_ms`, `probe_p99_ms`, "
        "`peak_db_backends`"
        + (
            ", and `lost_writes` of `writes_expected`: streams answered 200 whose view's audit row is not in PostgreSQL"
            if audited
            else ""
        )
        + ".",
        "",
        "| backend | " + " | ".join(f"`{v}`" for v in variants) + " |",
        "|---|" + "---|" * len(variants),
    ]


def _release_cell(r, audited) -> str:
    """One backend and variant's cell of the release table: empty for a cell that did not run,
    its status for one that failed, else its verdict and figures."""
    if r is None:
        return ""
    if r["status"] != "ok":
        return f"{r['status']}"
    return (
        f"**{verdict(r)}**<br>{r['conn_hold_p50_ms'] or '–'} / {r['stream_design_ms']} ms, "
        f"probe p99 {r['probe_p99_ms']} ms, {r['peak_db_backends']} backends" + (_lost(r) if audited else "")
    )


def _burst_section(rows) -> list[str]:
    """The lines of the release table's burst section, a row per backend and variant of the
    scenario `burst`; none for a run without it."""
    burst = [r for r in rows if r["scenario"] == "burst" and r["repeat"] == "1"]
    if not burst:
        return []
    cols = [
        "streams",
        "pool_max",
        "peak_db_backends",
        "db_limit",
        "overshoot",
        "too_many_clients",
        "pool_timeouts",
        "pool_wait_p99_ms",
        "hung_requests",
        "stream_failures",
        "streams_completed",
        "probe_p99_ms",
    ]
    out = [
        "",
        "## Under a burst (scenario `burst`)",
        "",
        "What a pool does when the streams outnumber it: `overshoot`, PostgreSQL's connections beyond "
        "its limit; `pool_timeouts`, waiters its checkout timeout (`pool_timeout_s`) turned away; "
        "`pool_wait_p99_ms`, how long waiters waited, those turned away included; `hung_requests`, "
        "waiters still waiting when the grace period ended.",
        "",
        "| backend | variant | " + " | ".join(f"`{c}`" for c in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for r in burst:
        values = [r[c] if r["status"] == "ok" or c in ("streams", "pool_max") else r["status"] for c in cols]
        out.append(f"| `{r['backend']}` | `{r['variant']}` | " + " | ".join(values) + " |")
    return out


def _lost(row) -> str:
    lost, expected = row.get("lost_writes", ""), row.get("writes_expected", "")
    if lost == "":
        return ", lost writes unknown"
    text = f"{lost} of {expected} writes lost"
    return f", **{text}**" if int(lost) else f", {text}"


CAPACITY_COLUMNS = [
    ("max_streams_ok", "max streams ok"),
    ("broken_at_streams", "broke at"),
    ("broken_detail", "first objective broken"),
    ("probe_p99_ms_at_max_ok", "probe p99 ms at max ok"),
    ("server_core_pct_per_1k_streams", "server % core /1k streams"),
]


def capacity_table(run_dir) -> str:
    """make capacity's verdicts, a row per cell and repeat: the most concurrent slow streams
    served within the objectives, and what broke first."""
    rows = cellfiles.read(os.path.join(run_dir, "capacity.csv"))
    with open(os.path.join(run_dir, "run.json")) as f:
        cells = json.load(f).get("cells", [])
    p = cells[0]["params"] if cells else {}
    repeats = len({r["repeat"] for r in rows}) > 1
    lines = [
        "# Capacity of each cell",
        "",
        run_line(run_dir) + " Regenerate with `make table RUN=<run directory> TABLE=<this file>`.",
        "",
        f"Steps of {p.get('capacity_start')}, ×{p.get('capacity_growth')}, up to {p.get('capacity_max')} concurrent "
        f"slow streams, each held {p.get('capacity_step_s')} s; objectives: probe p99 ≤ {p.get('slo_probe_p99_ms')} ms "
        f"in each step's hold, at most {p.get('slo_failures')} failed requests, connections within the pool's limit. "
        "Every step of every cell: its `steps.csv`.",
        "",
        "| cell |" + (" repeat |" if repeats else "") + "".join(f" {title} |" for _, title in CAPACITY_COLUMNS),
        "|---|" + ("---:|" if repeats else "") + "---:|---:|---|---:|---:|",
    ]
    for r in rows:
        values = (
            [r.get(k) or "-" for k, _ in CAPACITY_COLUMNS] if r["status"] == "ok" else [r["status"], "", "", "", ""]
        )
        lines.append(f"| {r['cell']} |" + (f" {r['repeat']} |" if repeats else "") + "".join(f" {v} |" for v in values))
    return "\n".join(lines) + "\n"


def _cost_pct(on, off):
    return 100 * (float(on) - float(off)) / float(off)


def _positive(value) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _measured(row) -> bool:
    """A cell that can enter the overhead table: it ran, and has its server cores and probe p99."""
    return row["status"] == "ok" and _positive(row["server_cores"]) and row["probe_p99_ms"] not in ("", None)


def _repeats(n) -> str:
    return f"{n} repeat{'' if n == 1 else 's'}"


def _hl_line(title, what, values):
    """(the bullet, (low, high)): the Hodges-Lehmann estimate of `values` with its interval."""
    estimate, low, high, level = paired.hodges_lehmann(values)
    line = (
        f"- **{title}:** {what} {estimate:+.1f} % (Hodges-Lehmann estimate over {_repeats(len(values))}); "
        f"{100 * level:.1f} % confidence interval {low:+.1f} to {high:+.1f} % (Wilcoxon signed-rank, exact). "
        f"Repeat by repeat: {min(values):+.1f} to {max(values):+.1f} %."
    )
    return line, (low, high)


def _overhead_pairs(run_dir, rows):
    """({(backend, variant, server): {repeat: (when the instrumented cell ran: "first", "second"
    or, side by side, "together"; on row, off row)}},
    {(backend, variant, server): repeats left out}), the repeats in order. A repeat is left out
    when one of its cells failed or lacks its CPU or probe figure."""
    together = runinfo.read_json(os.path.join(run_dir, "run.json")).get("schedule") == "side by side"
    twins, left_out = {}, {}
    for position, r in enumerate(rows):
        key = (r["backend"], r["variant"], r.get("server") or "gevent")
        if not _measured(r):
            left_out.setdefault(key, set()).add(int(r["repeat"]))
            continue
        repeat = twins.setdefault(key, {}).setdefault(int(r["repeat"]), {})
        if r["instrument"] in repeat:
            raise UsageError(
                f"RUN={run_dir}: repeat {r['repeat']} has two cells of {'/'.join(key)} with instrument="
                f"{r['instrument']} ({repeat[r['instrument']][1]['scenario']}, {r['scenario']}): the overhead "
                "table pairs one instrumented cell with one that is not"
            )
        repeat[r["instrument"]] = (position, r)
    pairs = {
        key: {
            n: (
                "together" if together else "first" if cells["True"][0] < cells["False"][0] else "second",
                cells["True"][1],
                cells["False"][1],
            )
            for n, cells in sorted(by_repeat.items())
            if set(cells) == {"True", "False"} and n not in left_out.get(key, ())
        }
        for key, by_repeat in twins.items()
    }
    return {key: done for key, done in pairs.items() if done}, {k: sorted(v) for k, v in left_out.items()}


def _overhead_section(key, done, left_out) -> list[str]:
    """One backend, variant and server of an overhead run: its pairs and their statistics."""
    controlled = all(_positive(row["loadgen_cores"]) for _, on, off in done.values() for row in (on, off))
    together = all(ran == "together" for ran, _, _ in done.values())  # done is never empty
    # the cost's part in the kernel and in user space, each in % of the uninstrumented cell's
    # server cores (they add up to the cost); runs from before the kernel's part was sampled have none
    split = all(row.get("server_system_cores") not in (None, "") for _, on, off in done.values() for row in (on, off))
    rows, figures = _overhead_rows(done, controlled, split)
    lines = _overhead_head(key, controlled) + rows
    lines += ["", _hl_line("Server CPU", "the instrumentation costs", figures["costs"])[0]]
    if split:
        lines += [
            _hl_line(
                "Of it, in the kernel", "system calls and page faults, instrumented minus not,", figures["kernel"]
            )[0]
            + " In % of the uninstrumented server's cores, as the next.",
            _hl_line("Of it, in user space", "the rest,", figures["user"])[0],
        ]
    if left_out:
        lines.append(
            f"- **Left out:** repeat{'s' if len(left_out) > 1 else ''} {', '.join(map(str, left_out))}, "
            "where a cell failed or has no server cores or probe p99."
        )
    if controlled:
        lines += _control_lines(done, figures["against"], figures["loadgen"])
    if not together:  # side by side, neither ran first
        lines.append(_position_line(figures["by_position"]))
    lines.append(_probe_line(figures["p99_differences"]))
    return lines


def _overhead_head(key, controlled) -> list[str]:
    """The heading of one backend, variant and server's section and its table's head, with the
    load generator's columns when every cell has its cores."""
    backend, variant, server = key
    return [
        "",
        f"## {backend} / {variant} under {server}",
        "",
        "| repeat | instrumented ran | server cores on | off | CPU cost |"
        + (" load generator cores on | off | cost against the load generator |" if controlled else "")
        + " probe p99 ms on | off | probes answered /s on | off |",
        "|---:|---|---:|---:|---:|" + ("---:|---:|---:|" if controlled else "") + "---:|---:|---:|---:|",
    ]


def _overhead_rows(done, controlled, split) -> tuple[list[str], dict]:
    """(the section's table rows, one per repeat; the figures its statistics are drawn from, by
    name: each repeat's cost, cost in the kernel and in user space, load generator's cost, cost
    against the load generator and probe p99 difference, and the costs by when the instrumented
    cell ran)."""
    figures = {
        "costs": [],
        "kernel": [],
        "user": [],
        "loadgen": [],
        "against": [],
        "p99_differences": [],
        "by_position": {"first": [], "second": []},
    }
    rows = []
    for repeat, (ran, on, off) in done.items():
        cost = _cost_pct(on["server_cores"], off["server_cores"])
        figures["costs"].append(cost)
        figures["by_position"].setdefault(ran, []).append(cost)
        figures["p99_differences"].append(float(on["probe_p99_ms"]) - float(off["probe_p99_ms"]))
        if split:
            in_kernel = float(on["server_system_cores"]) - float(off["server_system_cores"])
            figures["kernel"].append(100 * in_kernel / float(off["server_cores"]))
            figures["user"].append(cost - figures["kernel"][-1])
        control = ""
        if controlled:
            figures["loadgen"].append(_cost_pct(on["loadgen_cores"], off["loadgen_cores"]))
            figures["against"].append(
                _cost_pct(
                    float(on["server_cores"]) / float(on["loadgen_cores"]),
                    float(off["server_cores"]) / float(off["loadgen_cores"]),
                )
            )
            control = f" {on['loadgen_cores']} | {off['loadgen_cores']} | {figures['against'][-1]:+.1f} % |"
        rows.append(
            f"| {repeat} | {ran} | {on['server_cores']} | "
            f"{off['server_cores']} | {cost:+.1f} % |{control} {on['probe_p99_ms']} | {off['probe_p99_ms']} | "
            f"{on['probe_ok_per_s']} | {off['probe_ok_per_s']} |"
        )
    return rows, figures


def _control_lines(done, against, loadgen) -> list[str]:
    """The bullets on the control: the cost against the load generator, and the load generator's
    own change, flagged when its interval excludes 0."""
    lines = [_hl_line("Against the load generator", "the instrumentation costs", against)[0]]
    line, (low, high) = _hl_line("The load generator itself", "instrumented minus not,", loadgen)
    try:
        offs = [off for _, _, off in done.values()]
        r = statistics.correlation([float(x["server_cores"]) for x in offs], [float(x["loadgen_cores"]) for x in offs])
        correlated = f"; across the uninstrumented cells its cores and the server's correlate at r = {r:.2f}"
    except statistics.StatisticsError:  # fewer than two repeats, or a column that never changed
        correlated = ""
    moved = low > 0 or high < 0
    lines.append(
        line
        + " It runs the same load either way, so it is a control only while this stays near 0"
        + correlated
        + (
            ". **Here its interval excludes 0: the control moved too, so the cost against it is off by about as much.**"
            if moved
            else "."
        )
    )
    return lines


def _position_line(by_position) -> str:
    """The bullet with the median cost by when the instrumented cell ran, first or second."""
    return (
        "- **By position:** "
        + "; ".join(
            f"instrumented {name}, median {statistics.median(group):+.1f} % ({_repeats(len(group))})"
            for name, group in by_position.items()
            if group
        )
        + "."
    )


def _probe_line(p99_differences) -> str:
    """The bullet comparing probe p99 instrumented and not: the median difference and whether it
    is significant."""
    p = paired.signed_rank_p(p99_differences)
    return f"- **Probe p99:** instrumented minus not, median {statistics.median(p99_differences):+.1f} ms; " + (
        "no repeat differs."
        if p is None
        else f"Wilcoxon signed-rank p = {p:.2f}: "
        + ("not significantly different" if p >= 0.05 else "**significantly different**")
        + " at the 5 % level."
    )


def overhead_table(run_dir, rows) -> str:
    """What the instrumentation costs (MATRIX=overhead): a row per repeat of each instrumented
    cell and its uninstrumented twin (same backend, variant, server and repeat), and the paired
    comparison over the repeats (harness.results.paired). The load generator is the control: it runs
    the same load either way, and from cell to cell its CPU moves with the server's, so the
    server's cores per load-generator core cancel that shared noise."""
    pairs, left_out = _overhead_pairs(run_dir, rows)
    together = bool(pairs) and all(ran == "together" for done in pairs.values() for ran, _, _ in done.values())
    lines = [
        "# What the measuring costs",
        "",
        run_line(run_dir) + " Regenerate with `make table RUN=<run directory> TABLE=<this file>`.",
        "",
        "Each repeat runs the same load instrumented (the app's connection accounting: its metrics, event log "
        "and garbage-collector timing; the harness's sampler) and not "
        "(`instrument=false`; from commit 80bb282 on the detector middleware runs in both cells, before it "
        "the uninstrumented cell had none), "
        + (
            "side by side (`side_by_side = true`: both cells at once, each with its own app, load generator and "
            "PostgreSQL, so both see the same machine at the same moment). "
            if together
            else "one after the other (`make bench` reverses the order of every other repeat). "
        )
        + "Cost: the instrumented cell's server cores over the other's, minus 1; against the load generator: "
        "the same with each cell's server cores divided by its load generator's.",
    ]
    for key, done in pairs.items():
        lines += _overhead_section(key, done, left_out.get(key, []))
    return "\n".join(lines) + "\n"
