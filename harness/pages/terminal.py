"""What a run prints on the terminal: its progress, a line per cell, and at its end its tables:
a bench run's summary and each variant against hold, a capacity run's breaking points."""

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness.results import compare

TABLE_COLUMNS = [
    ("cell", "cell"),
    ("status", "status"),
    ("streams_completed", "streams ok"),
    ("stream_failures", "stream fail"),
    ("conn_hold_p50_ms", "conn hold p50 ms"),
    ("probe_requests", "probes"),
    ("probe_failures", "probe fail"),
    ("probe_p50_ms", "probe p50 ms"),
    ("probe_p99_ms", "probe p99 ms"),
    ("peak_pool_in_use", "peak in use"),
    ("peak_pool_waiting", "peak waiting"),
    ("peak_db_backends", "peak PG backends"),
    ("overshoot", "over pool limit"),
    ("pool_timeouts", "pool timeouts"),
    ("too_many_clients", "too many clients"),
    ("hung_requests", "hung"),
    ("lost_writes", "lost writes"),
    ("leaked_conns", "leaked conns"),
]
# shown for a target's streams (make bench TARGET=), whose length is theirs, not the matrix's,
# and under the switch: how many streams the detector saw pinned, and how long a stream took
STREAM_COLUMNS = [
    ("streams_pinned", "pinned"),
    ("stream_total_p50_ms", "stream p50 ms"),
]
# shown when a cell of the run has a fault
FAULT_COLUMNS = [
    ("fault_s", "fault at s"),
    ("failures_after_fault", "failed after fault"),
    ("recovery_s", "recovery s"),
]


def print_headline(rows, console):
    """Each variant against hold of its backend and scenario (medians over repeats)."""
    table = Table(
        title="each variant against hold (medians over repeats; in brackets the ratio to hold, ÷N: N times less)"
    )
    table.add_column("cell", no_wrap=True)
    for _, title in compare.HEADLINE:
        table.add_column(title, justify="right")
    for cell, values in compare.headline(rows):
        table.add_row(
            compare.label(cell, values),
            *(
                side.text() + (f" ({compare.format_ratio(r)})" if r is not None else "")
                for side, r in (values[m] for m, _ in compare.HEADLINE)
            ),
        )
    console.print(table)


def table_columns(rows) -> list[tuple[str, str]]:
    """The summary's columns the terminal table shows for these rows: (key, title)."""
    columns = list(TABLE_COLUMNS)
    if any(r.get("target") or str(r.get("release_all_streams")) == "True" for r in rows):
        at = [key for key, _ in columns].index("conn_hold_p50_ms") + 1
        columns[at:at] = STREAM_COLUMNS
    return columns + (FAULT_COLUMNS if any(r.get("fault") for r in rows) else [])


def print_table(rows, console):
    table = Table(title="summary (every column: summary.csv)")
    columns = table_columns(rows)
    for _, title in columns:
        if title == "cell":  # never cut: it says which row is which
            table.add_column(title, no_wrap=True, min_width=max(len(r["cell"]) for r in rows))
        else:
            table.add_column(title, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(key, "")) for key, _ in columns))
    console.print(table)


def progress(console):
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("remaining"),
        TimeRemainingColumn(),
        console=console,
    )


def capacity_cell_text(label, row):
    broke = (
        f"broke at {row['broken_at_streams']}: {row['broken_detail']}"
        if row["broken_objective"] != "none"
        else row["broken_detail"]
    )
    return (
        f"{label}: ok; max streams ok {row['max_streams_ok']} ({broke}); probe p99 there "
        f"{row['probe_p99_ms_at_max_ok']} ms; leaked conns {row['leaked_conns']}"
    )


def print_capacity_table(rows, console):
    from rich.table import Table

    table = Table(
        title="capacity: the most concurrent slow streams each cell served within its objectives "
        "(every column: capacity.csv)"
    )
    for title in (
        "cell",
        "status",
        "max streams ok",
        "broke at",
        "first objective broken",
        "probe p99 ms at max ok",
        "loadgen % core /1k streams",
        "server % core /1k streams",
        "leaked conns",
    ):
        table.add_column(
            title, justify="left" if title in ("cell", "first objective broken") else "right", no_wrap=title == "cell"
        )
    for r in rows:
        table.add_row(
            r["cell"],
            r["status"],
            str(r.get("max_streams_ok", "")),
            str(r.get("broken_at_streams", "")),
            r.get("broken_detail", "") or r.get("error", ""),
            str(r.get("probe_p99_ms_at_max_ok", "")),
            str(r.get("loadgen_core_pct_per_1k_streams", "")),
            str(r.get("server_core_pct_per_1k_streams", "")),
            str(r.get("leaked_conns", "")),
        )
    console.print(table)


def bench_cell_text(label, row):
    """A bench cell's line as it ends."""
    return (
        f"{label}: ok; conn hold p50 {row['conn_hold_p50_ms']} ms, probe p99 {row['probe_p99_ms']} ms, "
        f"{row['probe_failures']}/{row['probe_requests']} probes failed, "
        f"peak in use {row['peak_pool_in_use']}, peak waiting {row['peak_pool_waiting']}, "
        f"PG backends {row['peak_db_backends']}/{row['db_limit']}, "
        f"lost writes {row['lost_writes']}/{row['writes_expected']}, leaked conns {row['leaked_conns']}"
        + _fault_text(row)
        + (f"; {row['error']}" if row.get("error", "-") != "-" else "")
    )


def _fault_text(row):
    if row.get("fault", "-") == "-":
        return ""
    recovered = "never" if row["recovery_s"] == "-" else f"in {row['recovery_s']} s"
    return (
        f"; {row['fault']} at {row['fault_s']} s: {row['failures_after_fault']} failed after it, recovered {recovered}"
    )
