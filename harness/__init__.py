"""The benchmark harness: reads matrix.toml, starts PostgreSQL and the server, runs Locust,
samples, and writes a run directory under results/."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """Bad input, found before anything starts: one line naming the parameter and the fix."""


class CellError(Exception):
    """A cell could not run (a server did not start, a check failed)."""
