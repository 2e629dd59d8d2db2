"""The run's pictures (PNG, into the run directory), drawn with matplotlib from the raw files:

- timeline-<backend>-<scenario>[@<server>].png: per cell, connections in use, waiters and PostgreSQL
  backends against the number of Locust users, over the cell's time; one panel per variant,
  one shared time axis;
- probe-latency.png: per cell, probe latency percentiles (p50, p95, p99, max);
- conn-hold.png: per cell, how long each streaming request held a connection.
"""

import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from harness.measure import faults
from harness.measure.load import test_window  # noqa: E402
from harness.results import cellfiles, runinfo, summary
from harness.stack import (
    pglog,
    postgres,  # noqa: E402
)

COLOURS = {"in use": "tab:blue", "waiting": "tab:red", "PG backends": "tab:green", "users": "0.6"}


def _save(fig, path):
    with runinfo.replacing(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png", bbox_inches="tight")  # no label cut at an edge


def _cells(run_dir, rows):
    """[(row, cell directory, (start, stop))] for the cells that ran."""
    out = []
    for row in rows:
        cell_dir = os.path.join(run_dir, row["cell"], f"r{row['repeat']}")
        if row["status"] in ("ok", "incomplete") and os.path.exists(os.path.join(cell_dir, "timeline.csv")):
            window, _ = test_window(cell_dir, fallback=(None, None))
            out.append((row, cell_dir, window))
    return out


def _label(row, repeats):
    return row["variant"] + (f" r{row['repeat']}" if repeats > 1 else "")


def _users(cell_dir):
    """[(unix s, Locust users)] from Locust's history file."""
    points = []
    for r in cellfiles.read(os.path.join(cell_dir, "locust_stats_history.csv")):
        if r.get("Name") == "Aggregated":
            points.append((float(r["Timestamp"]), int(r["User Count"])))
    return points


def _lines(run_dir, cell_dir, samples, t0):
    """(name, width, [(seconds since t0, count)]) for the pool's waiters and connections in use,
    replayed exactly from the accounting log, and PostgreSQL's sessions of the app, from the
    cluster's log; the sampled timeline where there is no such log (HOST=, DATABASE_URL=)."""

    def sampled(column):
        return [(float(s["unix_s"]) - t0, int(s[column])) for s in samples if s.get(column) not in (None, "")]

    fault = faults.read(cell_dir)  # a killed worker's connections and waits end with it, as in the summary
    events = cellfiles.read_accounting(
        cell_dir, killed=(fault["worker_pid"], fault["unix_s"]) if fault and "worker_pid" in fault else None
    )
    pool = [(t - t0, in_use, waiting) for t, in_use, waiting in summary.pool_series(events)]
    sessions = pglog.sessions(runinfo.postgres_log(run_dir, cell_dir), postgres.APP_ROLE)
    # the lane's log holds every cell it ran: this cell's part, while its sampler ran (the state it began with first)
    first, last = (float(samples[0]["unix_s"]), float(samples[-1]["unix_s"])) if samples else (t0, float("inf"))
    backends = []
    for t, n in pglog.series(sessions or []):
        if t < first:
            backends[:] = [(first - t0, n)]
        elif t <= last:
            backends.append((t - t0, n))
    if backends and last != float("inf"):
        backends.append((last - t0, backends[-1][1]))  # drawn on to the panel's end
    return [
        ("waiting", 1.2, [(t, w) for t, _, w in pool] if events else sampled("pool_waiting")),
        ("in use", 2.4, [(t, u) for t, u, _ in pool] if events else sampled("pool_in_use")),
        ("PG backends", 1.0, backends if sessions is not None else sampled("db_backends")),
    ]


def timelines(run_dir, cells) -> list[str]:
    """One figure per backend and scenario, and server (the scenario part of the cell's name,
    <scenario>@<server>, says it; cells: _cells()); returns the files written."""
    repeats = max((int(r["repeat"]) for r, _, _ in cells), default=1)
    groups = {}
    for item in cells:
        groups.setdefault((item[0]["backend"], item[0]["cell"].split("/")[2]), []).append(item)
    return [_timeline(run_dir, backend, scenario, items, repeats) for (backend, scenario), items in groups.items()]


def _timeline(run_dir, backend, scenario, items, repeats) -> str:
    """Draw the timeline figure of one backend and scenario, a panel per cell (items) on one time
    axis and one count scale; returns its path."""
    fig, axes = plt.subplots(
        len(items), 1, sharex=True, sharey=True, squeeze=False, figsize=(10, 1.5 * len(items) + 1.0)
    )
    top = 1
    for ax, item in zip(axes[:, 0], items, strict=True):
        top = _timeline_panel(ax, run_dir, item, repeats, top)
    _count_scale(axes[:, 0], top)
    _timeline_heading(fig, backend, scenario)
    axes[-1, 0].set_xlabel("seconds since the test started")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
    path = os.path.join(run_dir, f"timeline-{backend}-{scenario}.png")
    _save(fig, path)
    plt.close(fig)
    return path


def _timeline_panel(ax, run_dir, item, repeats, top):
    """Draw one cell's panel: its connections and backends, its Locust users on a right axis, the
    moment the load stopped; returns the highest count drawn so far (top, or more)."""
    row, cell_dir, (start, stop) = item
    samples = cellfiles.read(os.path.join(cell_dir, "timeline.csv"))
    t0 = start if start is not None else (float(samples[0]["unix_s"]) if samples else 0)
    for name, width, points in _lines(run_dir, cell_dir, samples, t0):
        ax.step(
            [p[0] for p in points],
            [p[1] for p in points],
            where="post",
            color=COLOURS[name],
            label=name,
            linewidth=width,
        )
        top = max([top] + [p[1] for p in points])
    ax.set_ylabel(_label(row, repeats), rotation=0, ha="right", va="center", fontsize=9)
    _users_axis(ax, row, cell_dir, t0)
    if stop is not None:
        ax.axvline(stop - t0, color="0.3", linewidth=0.8, linestyle=":")
    ax.grid(alpha=0.3)
    return top


def _users_axis(ax, row, cell_dir, t0):
    """Add to a cell's panel a right axis with the cell's Locust users over time; returns nothing."""
    users = ax.twinx()
    points = [(t - t0, n) for t, n in _users(cell_dir)]
    users.step(
        [p[0] for p in points],
        [p[1] for p in points],
        where="post",
        color=COLOURS["users"],
        linestyle="--",
        linewidth=1,
        label="users",
    )
    users.set_ylim(bottom=0, top=max([int(row["streams"]) + 1] + [p[1] for p in points]) * 1.1)
    users.tick_params(labelsize=7, colors="0.4")


def _count_scale(axes, top):
    """Set every panel's count axis, linear to 10 and log above, up to half again the highest
    count (top); returns nothing."""
    ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if t <= top * 1.5]
    for ax in axes:
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylim(0, top * 1.5)
        ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.tick_params(axis="y", labelsize=7)


def _timeline_heading(fig, backend, scenario):
    """Put the legend and the title at the top of a timeline figure; returns nothing."""
    handles = [plt.Line2D([], [], color=c, linestyle="--" if n == "users" else "-") for n, c in COLOURS.items()]
    fig.legend(
        handles,
        [
            "connections in use (server)",
            "waiting for a connection (server)",
            "PostgreSQL backends of the app",
            "Locust users (right axis)",
        ],
        loc="upper center",
        ncol=4,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.35 / fig.get_figheight()),
    )
    fig.suptitle(
        f"{backend} / {scenario}: connections against users (count, linear to 10, log above; dotted line: load stops)",
        fontsize=10,
        y=1 - 0.08 / fig.get_figheight(),
    )


def probe_latency(run_dir, rows) -> str | None:
    done = [r for r in rows if r["status"] == "ok" and r["probe_p50_ms"] != ""]
    if not done:
        return None
    names = [f"{r['cell']}" + (f" r{r['repeat']}" if r["repeat"] != "1" else "") for r in done]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(done) + 1.4))
    ys = range(len(done))
    for column, marker, colour in (
        ("probe_p50_ms", "o", "tab:blue"),
        ("probe_p95_ms", "s", "tab:orange"),
        ("probe_p99_ms", "D", "tab:red"),
        ("probe_max_ms", "|", "black"),
    ):
        ax.scatter(
            [float(r[column]) for r in done],
            ys,
            marker=marker,
            color=colour,
            label=column.removeprefix("probe_").removesuffix("_ms"),
            zorder=3,
        )
    for y, r in zip(ys, done, strict=True):
        ax.plot([float(r["probe_p50_ms"]), float(r["probe_max_ms"])], [y, y], color="0.7", zorder=1)
        if int(r["probe_failures"]):
            ax.annotate(
                f"{r['probe_failures']}/{r['probe_requests']} failed",
                (float(r["probe_max_ms"]), y),
                xytext=(6, -3),
                textcoords="offset points",
                fontsize=8,
                color="tab:red",
            )
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("probe latency, ms (log scale); a failed probe counts at its timeout")
    ax.set_title("What everyone else experiences: /probe/ latency per cell", fontsize=10)
    ax.set_xlim(right=max(float(r["probe_max_ms"]) for r in done) * 6)  # room for the failure counts
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=4, frameon=False)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    path = os.path.join(run_dir, "probe-latency.png")
    _save(fig, path)
    plt.close(fig)
    return path


def conn_hold(run_dir, cells) -> str | None:
    data = []
    for row, cell_dir, (start, stop) in cells:
        holds = summary.stream_holds(
            cellfiles.read_accounting(cell_dir), start or 0, stop or float("inf"), cellfiles.routes(cell_dir)[0]
        )
        data.append((row, [max(h, 0.01) for h in holds]))  # log axis: a 0 ms hold drawn at 0.01
    if not any(h for _, h in data):
        return None
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(data) + 1.4))
    ax.boxplot([h or [float("nan")] for _, h in data], orientation="horizontal", whis=(0, 100), widths=0.6)
    ax.set_yticks(
        range(1, len(data) + 1),
        [f"{r['cell']}" + (f" r{r['repeat']}" if r["repeat"] != "1" else "") + f"  (n={len(h)})" for r, h in data],
        fontsize=8,
    )
    for i, (row, _) in enumerate(data, start=1):
        if row.get("stream_design_ms"):
            ax.plot(float(row["stream_design_ms"]), i, marker="|", color="tab:red", markersize=14)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms held, checkout to return (log scale)")
    ax.set_title(
        "How long each streaming request held a database connection, inside the measured window\n"
        "box: quartiles, whiskers: min and max, n: connections returned; red tick: the stream's "
        "length by design",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    path = os.path.join(run_dir, "conn-hold.png")
    _save(fig, path)
    plt.close(fig)
    return path


def draw(run_dir, rows) -> list[str]:
    """Every plot of a run (rows: its summary.csv); the files written."""
    cells = _cells(run_dir, rows)
    paths = timelines(run_dir, cells)
    paths += [p for p in (probe_latency(run_dir, rows), conn_hold(run_dir, cells)) if p]
    return paths


def capacity_cell(path, name, rows, p, pool_capacity):
    """Probe p99 and connections against the step's streams, the objective and the break marked."""
    if not rows:
        return None

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    x = [r["streams"] for r in rows]
    p99 = [r["probe_p99_ms"] if r["probe_p99_ms"] != "" else float("nan") for r in rows]
    top.plot(x, p99, "o-", color="tab:purple", label="probe p99")
    top.axhline(p.slo_probe_p99_ms, color="tab:red", linestyle="--", label=f"objective {p.slo_probe_p99_ms:g} ms")
    top.set_yscale("log")
    top.set_ylabel("probe p99, ms (log)")
    for r in rows:
        if r["broken"]:
            top.axvline(r["streams"], color="0.5", linestyle=":")
            top.annotate("broken", (r["streams"], top.get_ylim()[1]), fontsize=8, ha="right", va="top", rotation=90)
            break
    top.legend(fontsize=8)
    top.set_title(name, fontsize=10)
    for column, label, colour in (
        ("peak_pool_in_use", "peak in use", "tab:blue"),
        ("peak_pool_waiting", "peak waiting", "tab:red"),
        ("peak_db_backends", "peak PG backends", "tab:green"),
    ):
        ys = [r[column] if r[column] != "" else float("nan") for r in rows]
        bottom.plot(x, ys, "o-", color=colour, label=label)
    if pool_capacity:
        bottom.axhline(pool_capacity, color="tab:blue", linestyle="--", label=f"pool limit {pool_capacity}")
    bottom.set_ylabel("connections (peak in step)")
    bottom.set_xlabel("concurrent slow streams (step)")
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(x, [str(n) for n in x], fontsize=8)
    bottom.minorticks_off()
    bottom.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def capacity_run(run_dir, rows):
    """capacity.png of the run: every cell's max_streams_ok; returns the files written."""
    done = [r for r in rows if r["status"] == "ok"]
    written = [os.path.join(run_dir, r["cell"], f"r{r['repeat']}", "capacity.png") for r in done]
    written = [f for f in written if os.path.exists(f)]
    if not done:
        return written

    fig, ax = plt.subplots(figsize=(8, 0.3 * len(done) + 1.5))
    labels = [r["cell"] + (f" r{r['repeat']}" if int(r["repeat"]) > 1 else "") for r in done]
    values = [int(r["max_streams_ok"]) for r in done]
    colours = [
        "tab:orange"
        if r["broken_objective"] == "load_generator"
        else "tab:green"
        if r["broken_objective"] == "none"
        else "tab:blue"
        for r in done
    ]
    ax.barh(labels, [max(v, 0.5) for v in values], color=colours)
    for y, (v, r) in enumerate(zip(values, done, strict=True)):
        ax.annotate(f" {v}  ({r['broken_objective']})", (max(v, 0.5), y), va="center", fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_xlim(0.35, max(values + [1]) * 8)  # room for the labels right of the longest bar
    ax.invert_yaxis()
    ax.set_xlabel("max concurrent slow streams within the objectives (log)", fontsize=8)
    ax.set_title(
        "blue: an objective broke; green: nothing broke up to capacity_max;\n"
        "orange: the load generator's own limit (a lower bound)",
        fontsize=8,
    )
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    path = os.path.join(run_dir, "capacity.png")
    _save(fig, path)
    plt.close(fig)
    return [path, *written]
