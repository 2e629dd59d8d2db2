"""Stream Django responses without pinning a database connection.

    from stream_release import ReleasingStreamingHttpResponse, batches

- ReleasingStreamingHttpResponse: gives the request's connections back when the server starts
  sending the body (sync or async iterator); left alone inside an atomic block, or while a
  cursor on them is still being read.
- batches() / abatches(): read a table while streaming, one query per batch, the connection
  given back after each.
- release_connections() / arelease_connections(): the primitive both use.
- stream_release.middleware.StreamReleaseMiddleware: the production detector.
- stream_release.accounting.accounted(DATABASES): connection accounting for any backend.
- the pytest plugin: `pytest --fail-on-pinned-streams`, the fixtures assert_stream_releases
  and aassert_stream_releases.
"""

from stream_release.batches import abatches, batches
from stream_release.release import arelease_connections, release_connections
from stream_release.response import ReleasingStreamingHttpResponse

__version__ = "1.0.0rc1"
__all__ = ["ReleasingStreamingHttpResponse", "abatches", "arelease_connections", "batches", "release_connections"]
