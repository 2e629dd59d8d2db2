"""The audit rows a cell's streams should have left: every /stream/ request that was answered
200 had its view write one row keyed by its X-Request-Id before returning. Read from
PostgreSQL after Locust has ended (a 200 is sent only after the view's transaction, if any,
has ended) into the cell's audit.csv; summary.py counts the ones missing as lost_writes."""

import csv
import os

from harness.results import cellfiles, runinfo, summary
from harness.stack.postgres import admin_cursor


def export(cell_dir, admin_url, requests, stream_name):
    """Write audit.csv: the audit rows PostgreSQL has for the streams that got a 200
    (`requests`: the cell's, cellfiles.read_requests)."""
    ids = sorted(summary.answered_ids(requests, stream_name))
    with admin_cursor(admin_url) as cur:
        cur.execute(
            "SELECT request_id, variant, created FROM benchapp_auditevent WHERE request_id = ANY(%s) ORDER BY created",
            (ids,),
        )
        rows = cur.fetchall()
    with runinfo.replacing(os.path.join(cell_dir, cellfiles.AUDIT_FILE)) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["request_id", "variant", "created"])
        writer.writerows((rid, variant, created.isoformat()) for rid, variant, created in rows)
