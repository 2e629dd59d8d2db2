"""Read a table while streaming without holding a connection between reads: keyset
pagination, one query per batch, the connection given back after each."""

from stream_release.response import arelease_connections, release_connections


def _key_after(rows, key):
    last = rows[-1]
    if isinstance(last, dict):
        if key not in last:
            raise ValueError(f"batches() needs {key!r} among the values() fields")
        value = last[key]
    elif isinstance(last, tuple):
        raise TypeError("batches() needs model instances or values() dicts, not values_list() tuples")
    else:
        value = getattr(last, key)
    if value is None:
        raise ValueError(f"batches() needs a non-null key: {key!r} is None in a row")
    return value


def _check_size(size):
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")


def _next_page(queryset, rows, size, key):
    """The query for the rows after `rows`, or None when `rows` was the last batch."""
    if len(rows) < size:
        return None
    return queryset.order_by(key).filter(**{f"{key}__gt": _key_after(rows, key)})


def batches(queryset, size, key="pk"):
    """Lists of up to `size` rows of `queryset` in `key` order (a unique, non-null field;
    rows are model instances, or dicts from values() that include `key`), one query per
    list, with release_connections() after each."""
    _check_size(size)
    page = queryset.order_by(key)
    while True:
        rows = list(page[:size])
        release_connections()
        if not rows:
            return
        yield rows
        page = _next_page(queryset, rows, size, key)
        if page is None:
            return


async def abatches(queryset, size, key="pk"):
    """batches() for an async body (ASGI): the same lists through the async ORM, with
    arelease_connections() after each query."""
    _check_size(size)
    page = queryset.order_by(key)
    while True:
        rows = [row async for row in page[:size]]
        await arelease_connections()
        if not rows:
            return
        yield rows
        page = _next_page(queryset, rows, size, key)
        if page is None:
            return
