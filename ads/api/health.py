"""GET /health: for load balancers, without a key."""

from django.http import HttpRequest
from ninja import Router, Status

from ads.api.schemas import ErrorOut, HealthOut
from ads.health import broker, database

router = Router()


@router.get("/health", auth=None, response={200: HealthOut, 400: ErrorOut, 503: HealthOut})
def health(request: HttpRequest) -> Status[object]:
    """Database and broker reachability; no key needed, so no detail is given away
    (`manage.py health` gives the details, and checks a worker too)."""
    status = {c.name: "ok" if c.ok else "unreachable" for c in (database(), broker(timeout=2))}
    return Status(200 if set(status.values()) == {"ok"} else 503, status)
