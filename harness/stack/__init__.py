"""The processes a cell starts and stops: PostgreSQL, PgBouncer, the server under test,
the Python environments they run in, and the guardian that ends them all."""
