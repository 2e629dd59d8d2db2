"""Compare runs cell by cell (`python -m harness compare BASE NEW`), and the variants of one
run against `hold` (the headline table at the end of `make bench` and in report.html).

A cell's value for a metric is the median over its repeats that ended `ok`; its spread is
the lowest to the highest of them. A difference is called significant only when each side
has at least MIN_REPEATS repeats, the two spreads do not overlap, and the medians differ by
more than THRESHOLD. With fewer repeats there is no telling change from noise (run REPEAT=3):
the mark says "too few repeats", unless the medians differ by a factor of FAR or more, far
beyond the run-to-run spread of any metric here, which is marked better or worse as asv marks
a change beyond its factor.
"""

import math
import os
import statistics
import sys
from dataclasses import dataclass, field

from harness import UsageError
from harness.results import cellfiles, runinfo, summary

# metric -> +1 when more is better, -1 when less is better
METRICS = {
    "streams_completed": +1,
    "stream_failures": -1,
    "stream_ttfb_p99_ms": -1,
    "probe_p50_ms": -1,
    "probe_p99_ms": -1,
    "probe_failures": -1,
    "conn_hold_p50_ms": -1,
    "pool_wait_p99_ms": -1,
    "peak_pool_waiting": -1,
    "peak_db_backends": -1,
    "hung_requests": -1,
    "pool_timeouts": -1,
    "too_many_clients": -1,
    "lost_writes": -1,
    "leaked_conns": -1,
    "failures_after_fault": -1,
    "recovery_s": -1,
}
THRESHOLD = 0.05
MIN_REPEATS = 2
FAR = 2.0  # with too few repeats, a change of this factor or more is marked: noise here is a few tens of %
BETTER, WORSE, SAME, TOO_FEW = "better", "worse", "not significant", "too few repeats"
NEWLY_FAILING, FIXED, NOT_COMPARABLE = "newly failing", "fixed", "not comparable"


@dataclass
class Side:
    """One cell's repeats in one run, for one metric."""

    statuses: list = field(default_factory=list)
    values: list = field(default_factory=list)  # of the repeats that ended ok, where not empty

    @property
    def ok(self) -> bool:
        return "ok" in self.statuses

    @property
    def failed(self) -> int:
        """Repeats that failed or did not finish (a skipped cell did not run at all)."""
        return sum(1 for s in self.statuses if s not in ("ok", "skipped"))

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None

    def status(self) -> str:
        return "/".join(sorted(set(self.statuses)))

    def text(self) -> str:
        if not self.ok:
            return self.status()
        if not self.values:
            return "–"
        med = _number(self.median)
        text = (
            med
            if len(self.values) == 1
            else (f"{med} ({_number(min(self.values))}–{_number(max(self.values))}, n={len(self.values)})")
        )
        if self.failed:
            text += f" [{self.statuses.count('ok')}/{len(self.statuses)} ok]"
        return text


@dataclass
class Row:
    cell: str
    metric: str
    base: Side
    new: Side
    ratio: float | None
    mark: str


def _number(value) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def load(path) -> tuple[str, list[dict], dict]:
    """(label, summary rows, run.json or {}) of a run directory or a summary.csv file."""
    path = os.fspath(path)
    csv_path = os.path.join(path, "summary.csv") if os.path.isdir(path) else path
    if not os.path.isfile(csv_path) or not csv_path.endswith(".csv"):
        raise UsageError(
            f"{path} is neither a run directory with a summary.csv nor a summary.csv: name one under results/"
        )
    rows = cellfiles.read(csv_path)
    info = runinfo.read_json(os.path.join(os.path.dirname(csv_path), "run.json"))
    label = info.get("run_id") or os.path.basename(os.path.dirname(os.path.abspath(csv_path)))
    return label, _current(path, rows, info), info


def _current(path, rows, info) -> list[dict]:
    """The rows in this harness's format: an older run's, with the columns it lacks empty
    (unknown, not zero), said in one line; a newer run is refused."""
    # a summary.csv without its run.json: as current if it has every column
    version = (
        runinfo.run_format(info)
        if info or not rows
        else (runinfo.FORMAT if set(summary.COLUMNS) <= set(rows[0]) else 1)
    )
    if version > runinfo.FORMAT:
        raise UsageError(
            f"{path} is of run format {version}, newer than this checkout reads ({runinfo.FORMAT}): compare it "
            f"with the checkout that wrote it (commit {((info.get('git') or {}).get('sha') or '?')[:12]})"
        )
    missing = [c for c in summary.COLUMNS if rows and c not in rows[0]]
    if missing:
        print(
            f"{path}: run format {version}, {runinfo.FORMATS.get(version, 'unknown')}: the {len(missing)} "
            "columns it lacks are compared as empty",
            file=sys.stderr,
        )
    return [{**dict.fromkeys(missing, ""), **row} for row in rows]


def sides(rows, metric) -> dict[str, Side]:
    """{cell: Side} over every repeat of every cell."""
    out = {}
    for row in rows:
        side = out.setdefault(row["cell"], Side())
        side.statuses.append(row["status"])
        if row["status"] == "ok" and row.get(metric, "") != "":
            side.values.append(float(row[metric]))
    return out


def ratio(base, new):
    if base is None or new is None:
        return None
    if base == 0:
        return 1.0 if new == 0 else math.inf
    return new / base


def mark(metric, base: Side, new: Side, threshold=THRESHOLD):
    """A repeat that failed or did not finish makes a cell failing; a skipped one (PgBouncer
    missing) makes it not comparable."""
    if new.failed and not base.failed and base.ok:
        return NEWLY_FAILING
    if base.failed and not new.failed and new.ok:
        return FIXED
    if not (base.ok and new.ok) or not base.values or not new.values:
        return NOT_COMPARABLE
    r = ratio(base.median, new.median)
    if min(len(base.values), len(new.values)) < MIN_REPEATS:
        if r >= FAR or r <= 1 / FAR:
            return BETTER if (r > 1) == (METRICS[metric] > 0) else WORSE
        return TOO_FEW
    apart = min(new.values) > max(base.values) or max(new.values) < min(base.values)
    if not apart or abs(r - 1) <= threshold:
        return SAME
    return BETTER if (r > 1) == (METRICS[metric] > 0) else WORSE


def compare(base_rows, new_rows, metrics=None, threshold=THRESHOLD):
    """([Row], cells only in base, cells only in new), cells in the new run's order."""
    metrics = metrics or list(METRICS)
    base_cells = list(dict.fromkeys(r["cell"] for r in base_rows))
    new_cells = list(dict.fromkeys(r["cell"] for r in new_rows))
    both = [c for c in new_cells if c in base_cells]
    out = []
    for metric in metrics:
        b, n = sides(base_rows, metric), sides(new_rows, metric)
        out += [
            Row(c, metric, b[c], n[c], ratio(b[c].median, n[c].median), mark(metric, b[c], n[c], threshold))
            for c in both
        ]
    order = {c: i for i, c in enumerate(both)}
    out.sort(key=lambda r: (order[r.cell], metrics.index(r.metric)))
    return out, [c for c in base_cells if c not in new_cells], [c for c in new_cells if c not in base_cells]


def parameter_changes(base_info, new_info) -> dict[str, list[str]]:
    """{cell: ["pool_max 4 → 8", ...]} for cells whose parameters differ between the runs."""

    def params(info):
        return {(c["cell"]): c["params"] for c in info.get("cells", [])}

    b, n = params(base_info), params(new_info)
    diffs = {
        cell: [f"{k} {b[cell][k]} → {v}" for k, v in n[cell].items() if k in b[cell] and b[cell][k] != v]
        for cell in n
        if cell in b
    }
    return {cell: diff for cell, diff in diffs.items() if diff}


def parse_fail_on(items) -> list[tuple[str, str, float]]:
    """`METRIC>RATIO` or `METRIC<RATIO` -> (metric, op, ratio)."""
    out = []
    for item in items:
        op = ">" if ">" in item else "<" if "<" in item else None
        metric, _, raw = item.partition(op) if op else (item, "", "")
        metric = metric.strip()
        try:
            limit = float(raw)
        except ValueError:
            limit = None
        if op is None or limit is None or limit <= 0:
            raise UsageError(
                f"--fail-on {item!r} must look like METRIC>RATIO or METRIC<RATIO, e.g. --fail-on 'probe_p99_ms>1.2'"
            )
        if metric not in METRICS:
            raise UsageError(f"--fail-on {item!r}: {metric!r} is not compared; use one of {', '.join(METRICS)}")
        if (op == ">") != (METRICS[metric] < 0):
            right = ">" if METRICS[metric] < 0 else "<"
            suggestion = limit if (limit > 1) == (right == ">") else round(1 / limit, 2)
            raise UsageError(
                f"--fail-on {item!r}: {'less' if right == '>' else 'more'} {metric} is better, "
                f"so a regression is a ratio {right} 1: write e.g. {metric}{right}{suggestion:g}"
            )
        out.append((metric, op, limit))
    return out


def failures(rows: list[Row], rules, only_base=()) -> list[str]:
    """What breaks the --fail-on rules: a cell newly failing or missing from the new run, or a
    metric's ratio beyond its limit, either significant or with too few repeats to tell."""
    if not rules:
        return []
    out = [f"{cell}: newly failing" for cell in dict.fromkeys(r.cell for r in rows if r.mark == NEWLY_FAILING)]
    out += [f"{cell}: missing from the new run" for cell in only_base]
    for row in rows:
        for metric, op, limit in rules:
            if row.metric != metric or row.mark not in (BETTER, WORSE, SAME, TOO_FEW):
                continue
            beyond = row.ratio > limit if op == ">" else row.ratio < limit
            too_few = min(len(row.base.values), len(row.new.values)) < MIN_REPEATS
            if beyond and (row.mark == WORSE or too_few):
                out.append(
                    f"{row.cell}: {metric} {row.base.text()} → {row.new.text()}, "
                    f"ratio {format_ratio(row.ratio)} {op} {limit}" + (" (single repeat)" if too_few else "")
                )
    return out


def table(rows: list[Row]) -> list[list[str]]:
    """[cell, metric, base, new, ratio, mark] lines; a cell that failed on either side gets
    one line, its statuses."""
    out, done = [], set()
    measured = {r.metric for r in rows if r.base.values or r.new.values}
    for row in rows:
        if row.metric not in measured and row.base.ok and row.new.ok:
            continue  # in neither run (a column older runs lack): _preamble names it
        if row.mark in (NEWLY_FAILING, FIXED) or not (row.base.ok and row.new.ok):
            if row.cell not in done:
                done.add(row.cell)
                out.append([row.cell, "status", row.base.status(), row.new.status(), "", row.mark])
            continue
        out.append([row.cell, row.metric, row.base.text(), row.new.text(), format_ratio(row.ratio), row.mark])
    return out


HEADLINE = [
    ("conn_hold_p50_ms", "conn hold p50 ms"),
    ("probe_p99_ms", "probe p99 ms"),
    ("probe_failures", "probe failures"),
    ("streams_completed", "streams completed"),
    ("lost_writes", "lost writes"),
    ("leaked_conns", "leaked conns"),
]
LEAK_MARK = "⚠ leak"


def label(cell, values) -> str:
    """The cell's name in a headline table, marked when any repeat leaked a connection."""
    side, _ = values.get("leaked_conns", (None, None))
    return f"{cell} {LEAK_MARK}" if side is not None and any(v > 0 for v in side.values) else cell


def headline(rows, metrics=tuple(m for m, _ in HEADLINE)):
    """Each variant against `hold` of the same backend and scenario: [(cell, {metric: (Side,
    ratio of the medians to hold's, or None)})]."""
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    by_metric = {m: sides(rows, m) for m in metrics}
    out = []
    for cell in cells:
        backend, variant, scenario = cell.split("/")
        hold = f"{backend}/hold/{scenario}"
        values = {}
        for m in metrics:
            side = by_metric[m][cell]
            base = by_metric[m].get(hold)
            r = ratio(base.median, side.median) if base is not None and variant != "hold" and base.ok else None
            values[m] = (side, r)
        out.append((cell, values))
    return out


def format_ratio(r) -> str:
    """new/base: "1.25×"; far below 1 as a divisor, "÷1718", so that it keeps its digits."""
    if r is None:
        return ""
    if math.isinf(r):
        return "∞"
    if 0 < r < 0.1:
        return f"÷{1 / r:.0f}"
    return f"{r:.2f}×"


COLUMNS = ["cell", "metric", "base", "new", "ratio", "mark"]
MARK_STYLE = {
    BETTER: "green",
    WORSE: "bold red",
    NEWLY_FAILING: "bold red",
    FIXED: "green",
    NOT_COMPARABLE: "yellow",
    SAME: "dim",
    TOO_FEW: "dim",
}


def _preamble(base_label, new_label, only_base, only_new, changes, rows=()) -> list[str]:
    lines = [
        f"base: {base_label}",
        f"new:  {new_label}",
        f"ratio: new / base of the medians over the repeats that ended ok; significant: both sides at least {MIN_REPEATS} "
        f"repeats, spreads apart, medians more than {THRESHOLD:.0%} apart; with fewer, only a change by "
        f"a factor of {FAR:g} or more is marked, the rest says {TOO_FEW!r}",
    ]
    lines += [f"only in base: {cell}" for cell in only_base]
    lines += [f"only in new:  {cell}" for cell in only_new]
    lines += [f"parameters differ in {cell}: {', '.join(diff)}" for cell, diff in changes.items()]
    missing = [
        m
        for m in dict.fromkeys(r.metric for r in rows)
        if not any(r.base.values or r.new.values for r in rows if r.metric == m)
    ]
    if missing:
        lines.append(f"in neither run: {', '.join(missing)}")
    return lines


def markdown(base_label, new_label, rows, only_base, only_new, changes) -> str:
    lines = [f"- {line}" for line in _preamble(base_label, new_label, only_base, only_new, changes, rows)]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|---|"]
    for line in table(rows):
        cell, metric, *rest = line
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{cell}`",
                    f"`{metric}`",
                    *rest[:-1],
                    f"**{rest[-1]}**" if rest[-1] in (WORSE, NEWLY_FAILING) else rest[-1],
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def print_text(console, base_label, new_label, rows, only_base, only_new, changes):
    from rich.table import Table

    for line in _preamble(base_label, new_label, only_base, only_new, changes, rows):
        console.print(line, highlight=False)
    out = Table()
    for name in COLUMNS:
        out.add_column(
            name,
            justify="right" if name in ("base", "new", "ratio") else "left",
            no_wrap=name != "base" and name != "new",
        )
    for cell, metric, base, new, r, m in table(rows):
        out.add_row(cell, metric, base, new, r, f"[{MARK_STYLE[m]}]{m}[/]")
    console.print(out)


def run(paths, fmt="text", metrics=None, fail_on=(), console=None):
    """The command: compare every run in `paths` with the first; the exit status."""
    from rich.console import Console

    rules = parse_fail_on(fail_on)
    for metric in metrics or []:
        if metric not in METRICS:
            raise UsageError(f"--metric {metric} is not compared; use one of {', '.join(METRICS)}")
    if metrics:  # a rule's metric is always compared
        metrics = list(dict.fromkeys([*metrics, *(m for m, _, _ in rules)]))
    if len(paths) == 1:
        raise UsageError(
            "compare needs two runs, BASE and NEW (RUNS='base new'), or none for the two newest under results/"
        )
    paths = paths or runinfo.newest_runs(2)
    base_label, base_rows, base_info = load(paths[0])
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    broken = []
    for path in paths[1:]:
        new_label, new_rows, new_info = load(path)
        rows, only_base, only_new = compare(base_rows, new_rows, metrics)
        changes = parameter_changes(base_info, new_info)
        if fmt == "md":
            print(markdown(base_label, new_label, rows, only_base, only_new, changes))
        else:
            print_text(console, base_label, new_label, rows, only_base, only_new, changes)
        broken += failures(rows, rules, only_base)
    errors = Console(stderr=True)
    for line in broken:
        errors.print(f"[bold red]FAIL[/] {line}", highlight=False)
    return 1 if broken else 0
