"""Stream Django responses without pinning a database connection.

    from stream_release import ReleasingStreamingHttpResponse, batches

- ReleasingStreamingHttpResponse: gives the request's connections back when the server starts
  sending the body (sync or async iterator); left alone inside an atomic block.
- batches() / abatches(): read a table while streaming, one query per batch, the connection
  given back after each.
- release_connections() / arelease_connections(): the primitive both use.
- stream_release.middleware.StreamReleaseMiddleware: the production detector.
- stream_release.accounting.accounted(DATABASES): connection accounting for any backend.
- the pytest plugin: `pytest --fail-on-pinned-streams`, the fixture assert_stream_releases.
"""

from stream_release.batches import abatches, batches
from stream_release.response import ReleasingStreamingHttpResponse, arelease_connections, release_connections

__version__ = "0.1.0"
__all__ = ["ReleasingStreamingHttpResponse", "abatches", "arelease_connections", "batches", "release_connections"]
