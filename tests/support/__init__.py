"""What the tests use but are not tests: the release rules of docs/facts.md as code (facts.py),
a burst of checkouts in a gevent-patched process (burst.py), the test modes run in each
backend's own environment (release_modes.py, `python -m pytest tests/support/release_modes.py
--noconftest`), and a Django project nobody wrote for the harness (target_project.py)."""
