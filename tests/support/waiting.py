"""Waiting in tests for what a loaded machine makes late: poll, never sleep a guessed time."""

import time


def wait_for(predicate, timeout=10.0, what="condition", interval=0.05):
    """Poll `predicate` until it returns something true, and return that; fail naming `what`
    when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)
