"""Run in a gevent-patched subprocess by the tests: N greenlets at once each check out a
connection through ENGINE, hold it for a query of HOLD_S seconds and give it back, while a
superuser connection samples the app's backends in pg_stat_activity. Prints JSON."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
import django  # noqa: E402

django.setup()

import psycopg2  # noqa: E402
from django.db import connection  # noqa: E402

from benchapp.accounting import counts  # noqa: E402

greenlets, hold_s, admin_url = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
errors, done, peak_backends = [], [], [0]


def work():
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_sleep(%s)", [hold_s])
        done.append(1)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def sample(stop):
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    while not stop.is_set():
        with admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'bench' "
                        "AND backend_type = 'client backend'")
            peak_backends[0] = max(peak_backends[0], cur.fetchone()[0])
        gevent.sleep(0.01)
    admin.close()


stop = gevent.event.Event()
sampler = gevent.spawn(sample, stop)
gevent.joinall([gevent.spawn(work) for _ in range(greenlets)])
stop.set()
sampler.join()
print(json.dumps({"ok": len(done), "errors": errors, "peak_in_use": counts.in_use_peak,
                  "peak_waiting": counts.waiting_peak, "peak_backends": peak_backends[0]}))
