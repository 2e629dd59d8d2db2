"""The views the tests stream from: each returns a body of the rows 0..9 ("0\n1\n...").
They are the shapes that pin a connection, and their fixes."""

from django.db import connection, transaction
from django.http import FileResponse, StreamingHttpResponse

from stream_release import ReleasingStreamingHttpResponse, abatches, batches
from tests.models import Row


def _lines(numbers):
    return (f"{n}\n".encode() for n in numbers)


def query_then_stream(request):
    """Queries, then a plain StreamingHttpResponse: holds the connection for the whole body."""
    numbers = list(Row.objects.order_by("n").values_list("n", flat=True))
    return StreamingHttpResponse(_lines(numbers))


def iterator(request):
    """Streams queryset.iterator(): a cursor, and its connection, open for the whole body."""
    return StreamingHttpResponse(_lines(row.n for row in Row.objects.order_by("n").iterator(chunk_size=3)))


def guarded_close(request):
    """The usual guard: closes only outside an atomic block, so in a test's transaction (and
    under ATOMIC_REQUESTS) it never releases."""
    numbers = list(Row.objects.order_by("n").values_list("n", flat=True))
    if not connection.in_atomic_block:
        connection.close()
    return StreamingHttpResponse(_lines(numbers))


def query_then_file(request):
    """Queries, then a FileResponse, which the server may send with sendfile."""
    import io

    numbers = list(Row.objects.order_by("n").values_list("n", flat=True))
    return FileResponse(io.BytesIO(b"".join(f"{n}\n".encode() for n in numbers)))


def header_then_iterator(request):
    """The usual CSV export: a header, then queryset.iterator() in the body. The connection is
    opened after the first chunk, and held from the second to the end."""

    def body():
        yield b"0\n"  # the header: the first line, made without the database
        for row in Row.objects.filter(n__gte=1).order_by("n").iterator(chunk_size=3):
            yield f"{row.n}\n".encode()

    return StreamingHttpResponse(body())


def iterator_then_release(request):
    """Starts queryset.iterator() in the view and returns a ReleasingStreamingHttpResponse that
    continues it: the release must keep the connection (its cursor is still being read)."""
    rows = Row.objects.order_by("n").iterator(chunk_size=3)
    first = next(rows)
    return ReleasingStreamingHttpResponse(_continue(first, rows))


def _continue(first, rows):
    yield f"{first.n}\n".encode()
    for row in rows:
        yield f"{row.n}\n".encode()


def atomic_body(request):
    """A body that holds a transaction of its own while it streams."""

    def body():
        with transaction.atomic():
            for row in Row.objects.order_by("n").iterator(chunk_size=3):
                yield f"{row.n}\n".encode()

    return StreamingHttpResponse(body())


@transaction.non_atomic_requests
def non_atomic_no_database(request):
    """Streams without the database, outside ATOMIC_REQUESTS' transaction: holds nothing."""
    return StreamingHttpResponse(_lines(range(10)))


def write_then_stream(request):
    """Writes, then streams a plain StreamingHttpResponse (under ATOMIC_REQUESTS the write
    commits when the view returns)."""
    Row.objects.create(n=100)
    return StreamingHttpResponse(iter([b"written\n"]))


async def events(request):
    """Server-sent events polling the database between events with the async ORM, and
    nothing giving the connection back."""

    async def body():
        for _ in range(3):
            count = await Row.objects.filter(n__lt=10).acount()
            yield f"data: {count}\n\n".encode()

    return StreamingHttpResponse(body(), content_type="text/event-stream")


def no_database(request):
    return StreamingHttpResponse(_lines(range(10)))


def release(request):
    numbers = list(Row.objects.order_by("n").values_list("n", flat=True))
    return ReleasingStreamingHttpResponse(_lines(numbers))


def release_batches(request):
    rows = (row for batch in batches(Row.objects.all(), 3, key="n") for row in batch)
    return ReleasingStreamingHttpResponse(_lines(row.n for row in rows))


async def async_release_batches(request):
    async def body():
        async for batch in abatches(Row.objects.all(), 3, key="n"):
            for row in batch:
                yield f"{row.n}\n".encode()

    return ReleasingStreamingHttpResponse(body())


VIEWS = {
    "query-then-stream": query_then_stream,
    "iterator": iterator,
    "guarded-close": guarded_close,
    "header-then-iterator": header_then_iterator,
    "iterator-then-release": iterator_then_release,
    "atomic-body": atomic_body,
    "no-database": no_database,
    "non-atomic-no-database": non_atomic_no_database,
    "release": release,
    "release-batches": release_batches,
    "async-release-batches": async_release_batches,
}
