"""The harness's command line: `make` targets are thin wrappers over these commands. Bad input exits 2 with one line."""

import argparse
import os
import sys
import urllib.parse

import harness
from harness import ROOT, UsageError
from harness.measure import load
from harness.results import runinfo
from harness.spec import matrix
from harness.stack import postgres, procs


def _parser():
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter of matrix.toml, e.g. --set duration_s=20 (repeatable)",
    )
    overrides.add_argument(
        "--matrix-file",
        default=None,
        help="read backends, variants, scenarios and matrices from this file (default matrix.toml)",
    )

    run = argparse.ArgumentParser(add_help=False, parents=[overrides])
    run.add_argument(
        "--matrix", default=None, help="named matrix from matrix.toml (default: default; with --target: target)"
    )
    run.add_argument(
        "--target",
        default=None,
        help="measure your own Django project, described by this target.toml (harness/spec/target.py), "
        "instead of benchapp: one cell per stream of it and scenario of the matrix",
    )
    run.add_argument(
        "--out", default=None, help="run directory (default results/<UTC time>-<git sha12>); must not exist"
    )
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every cell this many times, every other time in reverse order (default 1)",
    )
    run.add_argument(
        "--server",
        default=None,
        metavar="NAME[,NAME...]",
        help="run every cell under these servers of matrix.toml instead of those the matrix names "
        "(gevent when it names none), e.g. uvicorn or gthread,uvicorn",
    )
    run.add_argument(
        "--host",
        default=None,
        help="an app something else started (e.g. docker compose): run against it, start nothing; needs --database-url",
    )
    run.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL something else started (sets BENCH_DATABASE_URL): start no cluster",
    )
    run.add_argument(
        "--master-bind",
        default=None,
        metavar="ADDRESS[:PORT]",
        help="Locust's workers run on other machines: the master listens here (port default 5557) "
        "and waits for locust_workers of them (python -m harness worker --master ADDRESS:PORT "
        "on each); it starts none itself",
    )
    sub.add_parser("bench", parents=[run], help="run a named matrix and write a run directory")
    sub.add_parser(
        "capacity",
        parents=[run],
        help="each cell of a named matrix under a step load of slow streams until an objective "
        "breaks (capacity_* and slo_* in matrix.toml); writes capacity.csv and plots",
    )

    serve = sub.add_parser(
        "serve", parents=[overrides], help="start PostgreSQL and the app, print their URLs, wait for Ctrl-C"
    )
    serve.add_argument("--server", default=None, help="server from matrix.toml (default gevent)")
    serve.add_argument(
        "--backend",
        default=None,
        help="backend from matrix.toml (default geventpool; with --target: own, the one its settings name)",
    )
    serve.add_argument("--scenario", default=None, help="take parameters from this scenario (default: the first)")
    serve.add_argument("--port", type=int, default=8000, help="the app's port (default 8000), on --bind's address")
    serve.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="listen on this address of the machine instead, the app and its throwaway PostgreSQL "
        "(which then trusts the app's role from the address's network): for a run from other "
        "machines of a private network (bench --master-bind); default 127.0.0.1",
    )
    serve.add_argument(
        "--log-dir", default=None, help="where the logs go (default results/serve; kept between sessions, appended to)"
    )
    serve.add_argument(
        "--target",
        default=None,
        help="serve your own Django project, described by this target.toml (harness/spec/target.py), instead of benchapp",
    )

    table = sub.add_parser(
        "table",
        help="Markdown tables of a run: which variant releases on which backend, the servers side by side, a capacity run's verdicts, or an overhead run's paired costs",
    )
    table.add_argument("run", nargs="?", default=None, help="run directory (default: the newest under results/)")
    table.add_argument("--scenario", default=None, help="scenario for the release table (default: the first but burst)")
    table.add_argument("--out", default=None, help="write to this file instead of printing")

    compare = sub.add_parser("compare", help="compare runs cell by cell: base, new, ratio and a mark")
    compare.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="BASE NEW ...: run directories or summary.csv files, each compared with the "
        "first (default: the two newest runs under results/)",
    )
    compare.add_argument("--format", choices=["text", "md"], default="text", help="md: a Markdown table")
    compare.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        default=None,
        help="compare only this metric (repeatable; default: all)",
    )
    compare.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="METRIC>RATIO",
        help="exit 1 if a cell's new/base ratio of METRIC is beyond RATIO (METRIC<RATIO "
        "for metrics where more is better), or a cell newly fails (repeatable)",
    )

    report = sub.add_parser(
        "report",
        help="write report.html (and the plots) of a run; of a capacity run, "
        "judge its steps again and rewrite capacity.csv and the plots",
    )
    report.add_argument("run", nargs="?", default=None, help="run directory (default: the newest under results/)")

    ui = sub.add_parser(
        "ui",
        parents=[overrides],
        help="start PostgreSQL, the app and Locust's web UI with the pool panel; Ctrl-C stops all",
    )
    ui.add_argument("--server", default=None, help="server from matrix.toml (default gevent)")
    ui.add_argument(
        "--backend",
        default=None,
        help="backend from matrix.toml (default geventpool; with --target: own, the one its settings name)",
    )
    ui.add_argument("--scenario", default=None, help="the form's defaults from this scenario (default: the first)")
    ui.add_argument("--port", type=int, default=8000, help="the app's port on 127.0.0.1 (default 8000)")
    ui.add_argument("--web-port", type=int, default=8089, help="the web UI's port on 127.0.0.1 (default 8089)")
    ui.add_argument(
        "--log-dir",
        default=None,
        help="where the session's logs and pool_panel.csv go (default results/ui/<UTC time>; must not exist)",
    )
    ui.add_argument(
        "--target",
        default=None,
        help="your own Django project, described by this target.toml (harness/spec/target.py), instead of "
        "benchapp: the form streams its first stream (change the path there)",
    )

    peer = sub.add_parser(
        "peer",
        parents=[overrides],
        help="the same slow-read load from slowhttptest (slow-read mode) and from this "
        "project's slow client, one after the other: what each costs (peer.csv)",
    )
    peer.add_argument("--backend", default="stock", help="backend from matrix.toml (default stock)")
    peer.add_argument("--variant", default="release", help="variant from matrix.toml (default release)")
    peer.add_argument(
        "--scenario", default="peer-slow-read", help="parameters from this scenario (default peer-slow-read)"
    )
    peer.add_argument(
        "--out", default=None, help="run directory (default results/<UTC time>-<git sha12>); must not exist"
    )

    cost = sub.add_parser(
        "detector-cost",
        parents=[overrides],
        help="what django-stream-release's detector middleware costs per request (detector_cost.csv)",
    )
    cost.add_argument("--backend", default="geventpool", help="backend from matrix.toml (default geventpool)")
    cost.add_argument("--requests", type=int, default=300, help="requests per batch (default 300)")
    cost.add_argument("--repeats", type=int, default=11, help="batches per kind of request and handler (default 11)")
    cost.add_argument(
        "--out", default=None, help="run directory (default results/<UTC time>-<git sha12>); must not exist"
    )

    queries = sub.add_parser(
        "query-cost",
        parents=[overrides],
        help="what a view that does not stream pays under the switch and under django-pg-real-pool, "
        "against neither: requests per second and p99 (query_cost_summary.csv)",
    )
    queries.add_argument("--users", type=int, default=16, help="Locust users, each in a closed loop (default 16)")
    queries.add_argument("--seconds", type=int, default=10, help="seconds per measurement (default 10)")
    queries.add_argument(
        "--rounds", type=int, default=8, help="rounds, each measuring every view and setup (default 8, at least 6)"
    )
    queries.add_argument("--server", default="gevent", help="server from matrix.toml (default gevent)")
    queries.add_argument(
        "--out", default=None, help="run directory (default results/<UTC time>-<git sha12>); must not exist"
    )

    worker = sub.add_parser(
        "worker",
        help="a Locust worker on a load machine, for a run started elsewhere with --master-bind",
        description="Run Locust's worker for the master at --master, once per cell of the run "
        "(each cell's master tells it to quit); it ends when it finds no master for "
        "5 minutes: the run is over. The cells' options come from the master.",
    )
    worker.add_argument(
        "--master",
        required=True,
        metavar="ADDRESS[:PORT]",
        help="the master's address, as the run's --master-bind gave it (port default 5557)",
    )

    params = sub.add_parser(
        "params",
        help="every parameter: its default, unit, limits and meaning",
        description="Every parameter a cell runs with: its default (matrix.toml's [defaults]), "
        "unit, limits and what it means. Override one with --set name=value.",
    )
    params.add_argument("--matrix-file", default=None, help="default matrix.toml")

    docs = sub.add_parser(
        "docs",
        help="write the reference pages drawn from the code (docs/commands.md, docs/parameters.md)",
        description="Write docs/commands.md (from this parser) and docs/parameters.md (from "
        "Params and matrix.toml's [defaults]).",
    )
    docs.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed page is out of date")

    packaged = sub.add_parser(
        "package-matrix",
        help="django-stream-release's own test suite on every supported Python x Django series x "
        "database, with nox (noxfile.py) against a throwaway PostgreSQL",
        description="Run django-stream-release's own test suite on every supported Python x Django "
        "series x database: one nox session per Python and Django series (noxfile.py), each running "
        "the suite on SQLite and on a throwaway PostgreSQL with four backends, side by side. A "
        "Python that is not installed fails the run, naming it.",
    )
    packaged.add_argument(
        "--python",
        dest="pythons",
        action="append",
        default=[],
        metavar="X.Y",
        help="only this Python's sessions (repeatable)",
    )
    packaged.add_argument(
        "--django",
        dest="djangos",
        action="append",
        default=[],
        metavar="SERIES",
        help="only this Django series' sessions, e.g. 6.0 (repeatable)",
    )
    packaged.add_argument(
        "--database",
        dest="databases",
        action="append",
        default=[],
        metavar="NAME",
        help="only this database, of sqlite, stock, persistent, native-pool, geventpool "
        "(repeatable; sqlite alone starts no PostgreSQL)",
    )
    packaged.add_argument(
        "--reuse", action="store_true", help="reuse the sessions' environments in .nox/ (the pins are installed again)"
    )
    packaged.add_argument(
        "--jobs", type=int, default=2, help="sessions side by side (default 2), each running its databases side by side"
    )
    packaged.add_argument(
        "pytest_args", nargs="*", metavar="PYTEST_ARG", help="after --: for each pytest run, e.g. -- -x -k plugin"
    )

    show = sub.add_parser("matrix", help="list the cells of a named matrix with their parameters")
    show.add_argument("--matrix", default=None, help="default: default, or target with --target")
    show.add_argument("--matrix-file", default=None, help="default matrix.toml")
    show.add_argument(
        "--target", default=None, help="a target file: its streams' cells, as make bench TARGET= runs them"
    )
    show.add_argument("--server", default=None, metavar="NAME[,NAME...]", help="every cell under these servers")
    for action in sub._choices_actions:  # each command's --help says what it does, as the list does
        command = sub.choices[action.dest]
        command.description = command.description or action.help[0].upper() + action.help[1:] + "."
    return parser


def _version() -> str:
    import tomllib

    from harness.results import runinfo

    try:
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):  # a copy without it (the Docker image)
        version = "unknown"
    state = runinfo.git_state()
    commit = f", commit {state['sha'][:12]}{' with local changes' if state['dirty'] else ''}" if state["sha"] else ""
    return f"python -m harness {version}{commit}"


def main(argv=None):
    args = _parser().parse_args(argv)
    return harness.run_command(lambda: COMMANDS[args.command](args))


def cmd_bench(args):
    """bench and capacity: the matrix's cells under a fixed load, or the step load's search."""
    from harness.runs import bench, modes

    overrides = matrix.parse_overrides(args.overrides)
    if args.database_url:
        parts = urllib.parse.urlsplit(args.database_url)
        if parts.password or "password" in urllib.parse.parse_qs(parts.query):
            raise UsageError(
                f"--database-url={postgres.redact(args.database_url)} has a password, which every "
                "user of this machine can read in the process list: export BENCH_DATABASE_URL "
                "instead, or put the password in PGPASSWORD or ~/.pgpass"
            )
        os.environ["BENCH_DATABASE_URL"] = args.database_url
    procs.raise_fd_limit()
    master = None
    if args.master_bind:
        master = load.Master.parse(args.master_bind)
        master.check_free()
    request = bench.Request(
        matrix=args.matrix or ("target" if args.target else "default"),
        overrides=overrides,
        repeat=args.repeat,
        out=args.out,
        matrix_file=args.matrix_file,
        servers=tuple(args.server.split(",")) if args.server else (),
        host=args.host,
        target=args.target,
        master=master,
    )
    _, rows = bench.run(request, modes.StepLoad() if args.command == "capacity" else modes.FixedLoad())
    return 0 if all(r["status"] in ("ok", "skipped") for r in rows) else 1


def cmd_peer(args):
    from harness.studies import peer

    procs.raise_fd_limit()
    peer.run(
        args.backend, args.variant, args.scenario, matrix.parse_overrides(args.overrides), args.out, args.matrix_file
    )
    return 0


def cmd_detector_cost(args):
    from harness.studies import detector_cost

    detector_cost.run(
        args.backend, args.requests, args.repeats, args.out, args.matrix_file, matrix.parse_overrides(args.overrides)
    )
    return 0


def cmd_query_cost(args):
    from harness.studies import query_cost

    request = query_cost.Request(
        users=args.users,
        seconds=args.seconds,
        rounds=args.rounds,
        server=args.server,
        out=args.out,
        matrix_file=args.matrix_file,
        overrides=matrix.parse_overrides(args.overrides),
    )
    query_cost.run(request)
    return 0


def cmd_worker(args):
    procs.raise_fd_limit()
    return load.run_worker(load.Master.parse(args.master, "--master"))


def cmd_package_matrix(args):
    from harness.studies import package_matrix

    return package_matrix.run(args.pythons, args.djangos, args.databases, args.pytest_args, args.reuse, args.jobs)


def cmd_serve(args):
    from harness import interactive

    return interactive.serve(args)


def cmd_ui(args):
    from harness import interactive

    return interactive.ui(args)


def cmd_table(args):
    from harness.pages import tables

    text = tables.table(args.run or runinfo.newest_runs(1)[0], args.scenario)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text, end="")
    return 0


def cmd_compare(args):
    from harness.results import compare

    return compare.run(args.runs, args.format, args.metrics, args.fail_on)


def cmd_report(args):
    from harness.pages import html_report
    from harness.runs import capacity

    run_dir = args.run or runinfo.newest_runs(1)[0]
    if runinfo.kind_of(run_dir) == "capacity":
        print("\n".join(capacity.rejudge(run_dir)))
    else:
        print(html_report.write(run_dir))
    return 0


def cmd_params(args):
    from rich.console import Console

    from harness.spec import params

    params.show(matrix.load(args.matrix_file), Console(width=None if sys.stdout.isatty() else 160))
    return 0


def cmd_docs(args):
    from harness.pages import docs

    os.environ["COLUMNS"] = str(docs.WIDTH)  # argparse wraps its help to it: the same page everywhere
    return docs.main(_parser(), check=args.check)


def cmd_matrix(args):
    """The cells make bench would run, benchapp's or a target's, without starting anything."""
    from harness.runs import subjects

    spec = matrix.load(args.matrix_file)
    name = args.matrix or ("target" if args.target else "default")
    cells = spec.cells(name, repeat=1, servers=args.server.split(",") if args.server else None)
    if args.target:
        cells = subjects.of(target=args.target).expand(cells)
    for cell in cells:
        print(cell.name, " ".join(f"{k}={v}" for k, v in vars(cell.params).items()))
    return 0


# each command of the parser and the function that runs it
COMMANDS = {
    "bench": cmd_bench,
    "capacity": cmd_bench,
    "peer": cmd_peer,
    "detector-cost": cmd_detector_cost,
    "query-cost": cmd_query_cost,
    "worker": cmd_worker,
    "package-matrix": cmd_package_matrix,
    "serve": cmd_serve,
    "ui": cmd_ui,
    "table": cmd_table,
    "compare": cmd_compare,
    "report": cmd_report,
    "params": cmd_params,
    "docs": cmd_docs,
    "matrix": cmd_matrix,
}
