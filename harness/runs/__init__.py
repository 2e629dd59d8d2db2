"""A run: matrix.toml's cells and parameters, the app under test, how a run loads its
cells (modes) and when they run (schedules), make bench and make capacity, and run.json."""
