"""Read a table while streaming without holding a connection between reads: keyset
pagination, one query per batch, the connection given back after each.

Keyset pagination: each batch is the rows after the last key of the one before, in `key`
order (`key="-pk"` pages downwards). So
- the key must be a unique, non-null field of the model (or "pk"): a key shared by two rows
  would skip one of them at a batch's edge; NULLs would never come;
- the rows come in key order: batches() replaces the model's Meta.ordering with it, and
  refuses a queryset with an order_by() of its own that differs (it could not keep it);
- each batch is a query of its own, not one snapshot: a row inserted meanwhile comes if its
  key is beyond the batches read so far, a row deleted meanwhile does not come, a row whose
  key changes meanwhile may come twice or not at all.

Everything batches() cannot page correctly is refused when it is called, in the view, before
a response exists: never after the first batch, when the client already has a 200 and part of
the body.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model, QuerySet
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesIterable, ValuesListIterable

from stream_release.release import arelease_connections, release_connections

__all__ = ["abatches", "batches"]

_M = TypeVar("_M", bound=Model)


@dataclass(frozen=True)
class _Pages:
    """How to page one queryset: its first page, and how to read the key of a row."""

    queryset: QuerySet[Any]
    size: int
    order: str  # "name" or "-name"
    lookup: str  # "name__gt" or "name__lt"
    key_of: Callable[[Any], Any]

    def first(self) -> QuerySet[Any]:
        return self.queryset.order_by(self.order)[: self.size]

    def after(self, rows: list[Any]) -> QuerySet[Any] | None:
        """The query for the rows after `rows`, or None when `rows` was the last batch."""
        if len(rows) < self.size:
            return None
        last = self.key_of(rows[-1])
        return self.queryset.order_by(self.order).filter(**{self.lookup: last})[: self.size]


def _refuse(message: str) -> ValueError:
    return ValueError(f"batches(): {message}")


def _pages(queryset: QuerySet[Any], size: int, key: str) -> _Pages:
    """Check everything before the first query; raise ValueError naming what to change."""
    if not isinstance(queryset, QuerySet):
        raise TypeError(f"batches() takes a QuerySet, got {type(queryset).__name__}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise _refuse(f"size must be a whole number of rows, at least 1, got {size!r}")
    query = queryset.query
    if query.is_sliced:
        raise _refuse("the queryset is sliced; page the whole queryset, and stop reading where you want")
    if query.combinator:
        raise _refuse(f"a {query.combinator}() cannot be filtered between batches; page each queryset apart")
    if query.distinct_fields:
        raise _refuse("distinct(*fields) needs an ordering of its own, which keyset pages cannot keep")
    descending = key.startswith("-")
    name = key.lstrip("-")
    meta = queryset.model._meta
    try:
        field = meta.pk if name == "pk" else meta.get_field(name)
    except FieldDoesNotExist:
        raise _refuse(
            f"key={key!r} is not a field of {meta.label}; give a unique, non-null field of it, or 'pk'"
        ) from None
    if not getattr(field, "concrete", False) or not (field.primary_key or field.unique):
        raise _refuse(
            f"key={key!r} is not unique: rows that share it would be skipped at a batch's edge; "
            f"give a unique, non-null field of {meta.label}, or 'pk'"
        )
    if field.null:
        raise _refuse(f"key={key!r} may be NULL, and rows where it is would never come; give a non-null field")
    sign = "-" if descending else ""
    same_order = {sign + n for n in (name, field.name, field.attname, *(["pk"] if field.primary_key else []))}
    own_order = [str(o) for o in (*query.order_by, *query.extra_order_by)]
    if own_order and not (len(own_order) == 1 and own_order[0] in same_order):
        raise _refuse(
            f"the queryset is ordered by {', '.join(own_order)}, but batches come in key order ({key!r}); "
            "drop the order_by(), or give that ordering as key= if it is one unique field"
        )
    return _Pages(
        queryset=queryset,
        size=size,
        order=key,
        lookup=f"{name}__{'lt' if descending else 'gt'}",
        key_of=_key_reader(queryset, field, key),
    )


def _key_reader(queryset: QuerySet[Any], field: Any, key: str) -> Callable[[Any], Any]:
    """How to read the key's value from a row of `queryset` (a model instance, a values() dict,
    a values_list() tuple, a flat value)."""
    names = {key.lstrip("-"), field.name, field.attname} | ({"pk"} if field.primary_key else set())
    iterable = queryset._iterable_class
    if issubclass(iterable, ModelIterable):
        return operator.attrgetter(field.attname)
    query = queryset.query
    fields = list(queryset._fields) or [*query.extra_select, *query.values_select, *query.annotation_select]  # type: ignore[attr-defined]
    found = [f for f in fields if f in names]
    if not found:
        shape = "values()" if issubclass(iterable, ValuesIterable) else "values_list()"
        raise _refuse(
            f"key={key!r} is not among the {shape} fields ({', '.join(fields)}): "
            f"add {field.name!r} to them, so that each batch knows where the last one ended"
        )
    if issubclass(iterable, ValuesIterable):
        return operator.itemgetter(found[0])
    if issubclass(iterable, FlatValuesListIterable):
        return lambda value: value  # flat=True: the one field is the key
    if issubclass(iterable, ValuesListIterable):  # and named=True
        return operator.itemgetter(fields.index(found[0]))
    raise _refuse(f"rows of {iterable.__name__} are not model instances, values() or values_list()")


def batches(queryset: QuerySet[_M] | QuerySet[Any], size: int, key: str = "pk") -> Iterator[list[Any]]:
    """Lists of up to `size` rows of `queryset`, in `key` order (a unique, non-null field, or
    "pk"; "-name" pages downwards), one query per list, the connection of the queryset's
    database given back after each (release_connections(using=queryset.db)).

    Rows are what the queryset gives: model instances, values() dicts or values_list() tuples
    (that include the key), flat values (of the key). Checked now, before any query: see the
    module's documentation for what is refused and why."""
    pages = _pages(queryset, size, key)
    return _batches(pages)


def _batches(pages: _Pages) -> Iterator[list[Any]]:
    page: QuerySet[Any] | None = pages.first()
    alias = pages.queryset.db
    while page is not None:
        rows = list(page)
        release_connections(using=alias)
        if not rows:
            return
        yield rows
        page = pages.after(rows)


def abatches(queryset: QuerySet[_M] | QuerySet[Any], size: int, key: str = "pk") -> AsyncIterator[list[Any]]:
    """batches() for an async body (ASGI): the same lists through the async ORM, with
    arelease_connections(using=queryset.db) after each query. Checked now, like batches()."""
    pages = _pages(queryset, size, key)
    return _abatches(pages)


async def _abatches(pages: _Pages) -> AsyncIterator[list[Any]]:
    page: QuerySet[Any] | None = pages.first()
    alias = pages.queryset.db
    while page is not None:
        rows = [row async for row in page]
        await arelease_connections(using=alias)
        if not rows:
            return
        yield rows
        page = pages.after(rows)
