"""Small SQL helpers the ORM does not offer."""

import json
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models.expressions import RawSQL

T = TypeVar("T")


def id_set(ids: Sequence[int | str], sql_type: str = "bigint") -> tuple[str, list[list[Any] | str]]:
    """SQL for a set of values bound as one parameter, so statements stay one per set
    however many values it holds (SQLite allows only 999 parameters per statement)."""
    if connection.vendor == "postgresql":
        return f"SELECT unnest(%s::{sql_type}[])", [list(ids)]
    return "SELECT value FROM json_each(%s)", [json.dumps(list(ids))]


def in_ids(ids: Sequence[int]) -> RawSQL:
    """For `filter(pk__in=in_ids(ids))`."""
    return RawSQL(*id_set(ids))


def in_texts(values: Sequence[str]) -> RawSQL:
    """For `filter(name__in=in_texts(values))`."""
    return RawSQL(*id_set(values, "text"))


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items (itertools.batched is 3.12+)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
