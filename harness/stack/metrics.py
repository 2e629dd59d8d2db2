"""The app's connection accounting, read from its /metrics (prometheus_client's text format):
the sampler reads it every interval, a target's warm-up once before and after its probes."""

import urllib.error
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

METRICS = {
    "stream_release_connections_in_use": "pool_in_use",
    "stream_release_connections_waiting": "pool_waiting",
    "stream_release_checkouts_total": "pool_checkouts_total",
}


# only the samples read here: the app's /metrics honours prometheus_client's `name[]`, and one
# that does not sends the whole page, which parses the same
METRICS_QUERY = urllib.parse.urlencode([("name[]", name) for name in METRICS])


# base URLs whose /metrics gave none of the named samples, or refused the filter: read whole
_WHOLE_PAGE = set()


def read_metrics(base_url: str, timeout: float = 1.0) -> dict:
    """The accounting's gauges and checkouts from the app's /metrics. When the named samples come
    back empty (an app's own view filtering with restricted_registry() over several workers'
    files finds nothing) or the filter is refused, the whole page is read, then and from then on."""
    out = {}
    for query in ("",) if base_url in _WHOLE_PAGE else (f"?{METRICS_QUERY}", ""):
        try:
            with urllib.request.urlopen(f"{base_url}/metrics{query}", timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError:
            if not query:
                raise
            _WHOLE_PAGE.add(base_url)
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                column = METRICS.get(sample.name)
                if column:
                    out[column] = out.get(column, 0) + sample.value
        if out or not query:
            break
        _WHOLE_PAGE.add(base_url)
    return out
