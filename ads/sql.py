"""Small SQL helpers the ORM does not offer."""

import json
from collections.abc import Iterator, Sequence
from typing import TypeVar

from django.db import connection
from django.db.models.expressions import RawSQL

T = TypeVar("T")


def id_set(ids: Sequence[int]) -> tuple[str, list[list[int] | str]]:
    """SQL for a set of ids bound as one parameter, so statements stay one per set
    however many ids it holds (SQLite allows only 999 parameters per statement)."""
    if connection.vendor == "postgresql":
        return "SELECT unnest(%s::bigint[])", [list(ids)]
    return "SELECT value FROM json_each(%s)", [json.dumps(list(ids))]


def in_ids(ids: Sequence[int]) -> RawSQL:
    """For `filter(pk__in=in_ids(ids))`."""
    return RawSQL(*id_set(ids))


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items (itertools.batched is 3.12+)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
