"""ENGINE "stream_release.db": the backend named by ACCOUNTED_ENGINE, with connection
accounting (stream_release.accounting.accounted() sets both)."""
