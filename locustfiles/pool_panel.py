"""The database pool panel of Locust's web UI (`make ui`): connections in use and requests
waiting for one (the app's /metrics), PostgreSQL backends of the app (pg_stat_activity) and
Locust's users, sampled every --panel-interval-s seconds while the UI runs.

It extends the UI the ways Locust supports: Flask routes on environment.web_ui.app, a tab
with a table (template_args extended_tabs/extended_tables, rows added to /stats/requests), a
CSV in the "Download Data" tab (extended_csv_files), and a chart drawn by panel.js (served
from here: no CDN, works offline), added to the index page. The CSV holds exactly the samples
the panel shows. It only runs with --panel-admin-url (the harness sets it).
"""

import collections
import csv
import json
import logging
import os
import sys
import time
import types
from pathlib import Path

import _common  # noqa: F401  (the project's options)
import gevent
from flask import jsonify, request, send_file
from locust import events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.measure.sampler import COLUMNS as SAMPLED  # noqa: E402
from harness.measure.sampler import Sampler

STATIC = Path(__file__).resolve().parent / "static"
COLUMNS = ["unix_s", "users", "pool_in_use", "pool_waiting", "db_backends"]
TITLES = {
    "unix_s": "time (unix s)",
    "users": "Locust users",
    "pool_in_use": "connections in use",
    "pool_waiting": "waiting for a connection",
    "db_backends": "PostgreSQL backends",
}
TAB = "database-pool"


@events.init_command_line_parser.add_listener
def add_options(parser):
    parser.add_argument(
        "--panel-admin-url",
        default="",
        env_var="BENCH_PANEL_ADMIN_URL",
        include_in_web_ui=False,
        help="PostgreSQL superuser URL of the app's database, for the pool panel",
    )
    parser.add_argument(
        "--panel-app-user",
        default="bench",
        env_var="BENCH_PANEL_APP_USER",
        include_in_web_ui=False,
        help="the app's PostgreSQL role, whose backends the panel counts",
    )
    parser.add_argument(
        "--panel-app-db",
        default="bench",
        env_var="BENCH_PANEL_APP_DB",
        include_in_web_ui=False,
        help="the app's database, whose backends the panel counts",
    )
    parser.add_argument(
        "--panel-csv",
        default="",
        env_var="BENCH_PANEL_CSV",
        include_in_web_ui=False,
        help="where the panel's samples are written (CSV)",
    )
    parser.add_argument(
        "--panel-metrics-url",
        default="",
        env_var="BENCH_PANEL_METRICS_URL",
        include_in_web_ui=False,
        help="where the app's /metrics is, without /metrics (default: the host)",
    )
    parser.add_argument(
        "--panel-interval-s",
        type=float,
        default=1.0,
        env_var="BENCH_PANEL_INTERVAL_S",
        include_in_web_ui=False,
        help="seconds between the panel's samples",
    )


class Panel:
    def __init__(self, environment, admin_url, app_user, app_db, csv_path, interval, metrics_url=""):
        self.environment, self.interval, self.csv_path = environment, interval, csv_path
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()  # the panel's queries must not block Locust's users
        db = types.SimpleNamespace(admin_url=admin_url, app_user=app_user, app_db=app_db)
        self.sampler = Sampler(None, db, metrics_url or environment.host).connect()
        self.samples = collections.deque(maxlen=3600)
        self.file = open(csv_path, "w", newline="", buffering=1)
        self.writer = csv.writer(self.file)
        self.writer.writerow(COLUMNS)
        self.greenlet = gevent.spawn(self.run)

    def run(self):
        t0 = time.monotonic()
        tick = 0
        while True:
            try:
                sample = dict(zip(SAMPLED, self.sampler.sample(time.monotonic() - t0), strict=True))
            except Exception as exc:  # a bad answer must not stop the panel: an empty sample
                logging.getLogger(__name__).warning("pool panel sample failed: %s", exc)
                sample = {}
            sample["users"] = self.environment.runner.user_count if self.environment.runner else 0
            row = {c: sample.get(c, "") for c in COLUMNS}
            self.samples.append(row)
            self.writer.writerow([row[c] for c in COLUMNS])
            tick += 1
            gevent.sleep(max(0.0, t0 + tick * self.interval - time.monotonic()))

    def table_rows(self, count=20):
        """The newest samples first, for the tab's table."""
        return [
            {**row, "unix_s": time.strftime("%H:%M:%S", time.localtime(float(row["unix_s"])))}
            for row in list(self.samples)[-count:][::-1]
        ]


@events.init.add_listener
def start_panel(environment, **_):
    options = environment.parsed_options
    web_ui = environment.web_ui
    if web_ui is None or not getattr(options, "panel_admin_url", ""):
        return
    csv_path = options.panel_csv or os.path.join(os.getcwd(), "pool_panel.csv")
    panel = Panel(
        environment,
        options.panel_admin_url,
        options.panel_app_user,
        options.panel_app_db,
        csv_path,
        options.panel_interval_s,
        options.panel_metrics_url,
    )
    environment.events.quitting.add_listener(lambda **_: (panel.greenlet.kill(block=False), panel.file.close()))

    web_ui.template_args["extended_tabs"] = [{"title": "Database pool", "key": TAB}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB, "structure": [{"key": c, "title": TITLES[c]} for c in COLUMNS]}
    ]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./bench/pool.csv", "title": "Download database pool CSV (the panel's samples)"}
    ]

    @web_ui.app.route("/bench/pool")
    def pool_json():
        return jsonify({"columns": COLUMNS, "interval_s": panel.interval, "samples": list(panel.samples)[-600:]})

    @web_ui.app.route("/bench/pool.csv")
    def pool_csv():
        panel.file.flush()
        return send_file(panel.csv_path, mimetype="text/csv", as_attachment=True, download_name="pool_panel.csv")

    @web_ui.app.route("/bench/panel.js")
    def panel_js():
        return send_file(STATIC / "panel.js", mimetype="application/javascript")

    @web_ui.app.after_request
    def extend(response):
        if request.path == "/stats/requests" and response.is_json:
            data = response.get_json()
            data["extended_stats"] = [{"key": TAB, "data": panel.table_rows()}]
            response.set_data(json.dumps(data))
        elif request.path == "/" and response.mimetype == "text/html":
            html = response.get_data(as_text=True)
            response.set_data(html.replace("</body>", '<script src="./bench/panel.js"></script></body>'))
        return response
