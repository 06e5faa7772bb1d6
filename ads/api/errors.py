"""How the API answers what goes wrong: one line per field and reason, in JSON.

`install` registers the handlers on the API; an operation that describes its own input
errors raises `InputRefused` with its lines (see `ads.api.spend`).
"""

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

from django.db import InterfaceError, OperationalError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from ninja import NinjaAPI, Schema, Status
from ninja.errors import ValidationError as NinjaValidationError

logger = logging.getLogger("ads.api")  # the API's one logger name, as in its log lines

DATABASE_BUSY = (
    "database: busy or unreachable, so the request may not have been recorded; send it "
    "again as it was (each idempotency_key is recorded once)"
)
BAD_REQUEST = "bad request: the request could not be read"
NOT_FOUND = "no {} with id {}"

M = TypeVar("M", bound=Model)


class InputRefused(Exception):
    """Input an operation refused, with its own lines naming each field and reason.

    Raised while the request is read (from a body type's validator), so it must not be
    a ValueError: pydantic would fold it into one of its own errors.
    """

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__(lines)
        self.lines = list(lines)


def invalid_request(
    api: NinjaAPI, request: HttpRequest, error: NinjaValidationError
) -> HttpResponse:
    """Malformed requests answer like the rest: 422 with one line per field and reason."""
    lines = [
        f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in error.errors
    ]
    return api.create_response(request, {"detail": lines}, status=422)


def input_refused(api: NinjaAPI, request: HttpRequest, error: InputRefused) -> HttpResponse:
    return api.create_response(request, {"detail": error.lines}, status=422)


def database_busy(api: NinjaAPI, request: HttpRequest, error: Exception) -> HttpResponse:
    """A lock wait that timed out or a lost connection. The transaction was rolled back
    (or, if the connection died while committing, may have gone through): either way
    the same request again is safe."""
    logger.warning("%s %s: database error, answered 503: %s", request.method, request.path, error)
    response = api.create_response(request, {"detail": [DATABASE_BUSY]}, status=503)
    response["Retry-After"] = "1"
    return response


def install(api: NinjaAPI) -> None:
    api.add_exception_handler(NinjaValidationError, partial(invalid_request, api))
    api.add_exception_handler(InputRefused, partial(input_refused, api))
    api.add_exception_handler(OperationalError, partial(database_busy, api))
    api.add_exception_handler(InterfaceError, partial(database_busy, api))


def unknown_query(request: HttpRequest, schema: type[Schema], what: str) -> Status[object] | None:
    """A 422 naming each query parameter `schema` does not have, or None."""
    unknown = sorted(set(request.GET) - set(schema.model_fields))
    if not unknown:
        return None
    return Status(422, {"detail": [f"query.{name}: unknown {what}" for name in unknown]})


def one_or_404(
    visible: QuerySet[M], pk: int, out: Callable[[M], dict[str, object]], *, what: str
) -> Status[object]:
    """200 with `out` of the object `pk` among those the caller may see; else a 404 naming
    `what`, the same whether it does not exist or belongs to another key's brands."""
    obj = visible.filter(pk=pk).first()
    if obj is None:
        return Status(404, {"detail": NOT_FOUND.format(what, pk)})
    return Status(200, out(obj))


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's own 400s (a malformed header or host, too many fields) in JSON for
    API clients, its HTML page for everyone else (the project's `handler400`)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": BAD_REQUEST}, status=400)
    return defaults.bad_request(request, exception)
