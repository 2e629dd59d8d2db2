"""Run in a gevent-patched subprocess by the tests: N greenlets at once each check out a
connection through ENGINE, count the app's backends in pg_stat_activity on it, hold it for a
query of HOLD_S seconds and give it back. Prints JSON.

Each connection counts from inside itself, so the peak is the most any holder saw: a sampler
on a connection of its own may not be scheduled at all while 500 greenlets connect."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchapp.settings")
import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from stream_release.accounting import counts  # noqa: E402

greenlets, hold_s = int(sys.argv[1]), float(sys.argv[2])
started = time.time()  # backends of an earlier process may still be ending: not counted
errors, done, seen, pids = [], [], [0], set()


def work():
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_backend_pid(), count(*) FROM pg_stat_activity "
                "WHERE usename = current_user AND backend_type = 'client backend' "
                "AND backend_start >= to_timestamp(%s)",
                [started],
            )
            pid, backends = cur.fetchone()
            pids.add(pid)
            seen[0] = max(seen[0], backends)
            cur.execute("SELECT pg_sleep(%s)", [hold_s])
        done.append(1)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


gevent.joinall([gevent.spawn(work) for _ in range(greenlets)])
print(
    json.dumps(
        {
            "ok": len(done),
            "errors": errors,
            "peak_in_use": counts.in_use_peak,
            "peak_waiting": counts.waiting_peak,
            "peak_backends": seen[0],
            "backend_pids": len(pids),
        }
    )
)
