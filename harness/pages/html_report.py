"""report.html of a run: one self-contained file (no network; the plots embedded) with the
run's metadata, the headline table, the plots, the summary and links to the raw files.
Written by `make bench` at the end of a run; `make report RUN=dir` rebuilds it."""

import base64
import html
import json
import os

from harness import phase
from harness.pages import plots
from harness.results import compare, runinfo

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.bad { color: #b00; font-weight: bold; } .good { color: #070; } .muted { color: #777; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
code { background: #f6f6f6; padding: 0 3px; }
"""
SUMMARY_COLUMNS = [
    "cell",
    "repeat",
    "status",
    "streams_completed",
    "stream_failures",
    "conn_hold_p50_ms",
    "probe_requests",
    "probe_failures",
    "probe_p50_ms",
    "probe_p99_ms",
    "peak_pool_in_use",
    "peak_pool_waiting",
    "peak_db_backends",
    "hung_requests",
    "lost_writes",
    "leaked_conns",
    "recovery_s",
    "error",
]
RAW_FILES = [
    "requests.csv",
    "timeline.csv",
    "audit.csv",
    "fault.json",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "server.log",
    "locust.log",
    "error.txt",
]


def _e(value) -> str:
    return html.escape(str(value))


def _table(header, rows, classes=None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = (classes or {}).get(i, "")
        out.append(f"<tr class='{cls}'>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return "\n".join(out) + "</table>"


def _metadata(info) -> str:
    git = info.get("git") or {}
    machine = info.get("machine") or {}
    db = info.get("database") or {}
    items = [
        ("run", info.get("run_id")),
        ("status", info.get("status")),
        ("matrix", f"{info.get('matrix')}: {info.get('matrix_description', '')}"),
        ("overrides", json.dumps(info.get("overrides") or {})),
        ("repeats", info.get("repeat")),
        ("commit", f"{git.get('sha')}{' with local changes' if git.get('dirty') else ''}"),
        (
            "machine",
            f"{machine.get('cpu_count')} × {machine.get('cpu_model')}, {machine.get('os', '')}, "
            f"Python {machine.get('python')}",
        ),
        ("PostgreSQL", f"{db.get('version')} ({db.get('source', '')}), max_connections {db.get('max_connections')}"),
        ("started, ended (UTC)", f"{info.get('started_utc')}, {info.get('ended_utc')}"),
    ]
    return _table(["", ""], [[_e(k), _e(v)] for k, v in items])


def _headline(rows) -> str:
    """Flagged: lost writes, and a metric at least twice hold's in the bad direction."""
    lines = []
    for cell, values in compare.headline(rows):
        label = compare.label(cell, values)
        line = [
            f"<code>{_e(cell)}</code>" + (f" <span class=bad>{_e(compare.LEAK_MARK)}</span>" if label != cell else "")
        ]
        for metric, _ in compare.HEADLINE:
            side, r = values[metric]
            bad = (metric in ("lost_writes", "leaked_conns") and bool(side.median)) or (
                r is not None and compare.METRICS[metric] < 0 and r >= 2
            )
            suffix = f" <span class='muted'>({compare.format_ratio(r)} vs hold)</span>" if r is not None else ""
            line.append(f"<span{' class=bad' if bad else ''}>{_e(side.text())}</span>{suffix}")
        lines.append(line)
    return _table(["cell"] + [title for _, title in compare.HEADLINE], lines)


def _image(path) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    return f"<img alt='{_e(os.path.basename(path))}' src='data:image/png;base64,{data}'>"


def _raw_links(run_dir, rows) -> str:
    items = []
    for row in rows:
        rel = os.path.join(row["cell"], f"r{row['repeat']}")
        present = [name for name in RAW_FILES if os.path.exists(os.path.join(run_dir, rel, name))]
        present += (
            sorted(n for n in os.listdir(os.path.join(run_dir, rel)) if n.startswith("accounting-"))
            if os.path.isdir(os.path.join(run_dir, rel))
            else []
        )
        links = " ".join(f"<a href='{_e(os.path.join(rel, n))}'>{_e(n)}</a>" for n in present)
        items.append(f"<li><code>{_e(row['cell'])}</code> r{_e(row['repeat'])}: {links or '(no files)'}</li>")
    return "<ul>" + "\n".join(items) + "</ul>"


def write(run_dir) -> str:
    """Draw the plots and write report.html; returns its path."""
    _, rows, info = compare.load(run_dir)
    images = plots.draw(run_dir, rows)
    timeline_images = [p for p in images if os.path.basename(p).startswith("timeline-")]
    other_images = [p for p in images if p not in timeline_images]
    status_class = {i: "bad" for i, r in enumerate(rows) if r["status"] not in ("ok", "skipped")}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(info.get('run_id', os.path.basename(run_dir)))}: streaming connection benchmark</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Run <code>{_e(info.get('run_id', os.path.basename(run_dir)))}</code></h1>",
        _metadata(info),
        "<h2>Each variant against <code>hold</code></h2>",
        "<p>Medians over the repeats that ended ok; in brackets, the ratio to <code>hold</code> of the same "
        "backend and scenario (÷N: N times less). <code>conn hold p50 ms</code>: how long a streaming request held its database "
        "connection; <code>probe p99 ms</code>: what every other request waited; <code>lost writes</code>: "
        "streams answered 200 whose audit row is not in PostgreSQL.</p>",
        _headline(rows),
        "<h2>Connections over time</h2>",
        "<p>Per cell: connections checked out and requests waiting for one (the server's accounting), "
        "PostgreSQL backends of the app (<code>pg_stat_activity</code>), sampled every 0.1 s, against "
        "the number of Locust users.</p>",
        *(_image(p) for p in timeline_images),
        "<h2>Probe latency and connection hold time</h2>",
        *(_image(p) for p in other_images),
        "<h2>Summary</h2>",
        "<p>Every column, with its meaning in docs/reference.md: <a href='summary.csv'>summary.csv</a>; "
        "the run's parameters: <a href='run.json'>run.json</a>.</p>",
        _table(SUMMARY_COLUMNS, [[_e(r.get(c, "")) for c in SUMMARY_COLUMNS] for r in rows], status_class),
        "<h2>Raw files</h2>",
        _raw_links(run_dir, rows),
        "</body></html>",
    ]
    path = os.path.join(run_dir, "report.html")
    phase("report")
    with runinfo.replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
