"""The load a cell puts on the app and what is measured while it runs: Locust, the
sampler, CPU and memory, PostgreSQL's session log, the faults, the audit rows."""
