"""The HTTP API, /api/v1/: spend ingestion and budget status for other systems.

A thin interface like the command and the admin: each view turns the request into
typed arguments, calls a service or a read-only view, and reports. Money travels as
decimal strings, never JSON numbers; times as ISO-8601 with an offset.
"""

import json
import logging
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views import defaults
from ninja import Field, NinjaAPI, Query, Schema, Status
from ninja import Path as PathParam
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyHeader
from pydantic import ConfigDict
from pydantic import ValidationError as PydanticValidationError

from ads.api_keys import check_key
from ads.health import broker, database
from ads.models import ApiKey, Brand, Campaign, SpendEvent, SpendSource
from ads.money import canonical
from ads.rules import next_schedule_change, over, schedule_summary
from ads.selectors import standing
from ads.services import MAX_BATCH, CampaignState, SpendInput, record_spend_batch
from ads.validation import MAX_ID, MAX_KEY_LENGTH, SpendConflict, describe

logger = logging.getLogger(__name__)

Money = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["12.50"])]


class KeyAuth(APIKeyHeader):
    """`X-API-Key: abg_...`; keys are created, limited to brands and revoked in the admin."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        api_key = check_key(key or "", at=timezone.now())
        logger.info(
            "api %s %s key=%s", request.method, request.path, api_key.prefix if api_key else "-"
        )
        return api_key


api = NinjaAPI(
    title="Ad Budget Guard API",
    version="1",
    urls_namespace="api-v1",
    auth=KeyAuth(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)


class ErrorOut(Schema):
    detail: str | list[str]


@api.exception_handler(NinjaValidationError)
def invalid_request(request: HttpRequest, error: NinjaValidationError) -> HttpResponse:
    """Malformed requests answer like the rest: 422 with one line per field and reason,
    spend bodies in the services' words ("index 3: amount: ...")."""
    lines = _spend_body_errors(request) or [
        f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in error.errors
    ]
    return api.create_response(request, {"detail": lines}, status=422)


UNKNOWN_FIELD = (
    "unknown field; a spend has campaign_id, amount, occurred_at and idempotency_key, "
    "a batch has events"
)


def _spend_body_errors(request: HttpRequest) -> list[str] | None:
    """A spend body's errors against the one shape it has (one spend, or a batch under
    "events"), not the union's: pydantic reports both shapes, with its validators'
    names in the path and 'Field required' for the fields of the other shape."""
    if request.method != "POST" or not request.path.endswith("/spend"):
        return None
    try:
        body = json.loads(request.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    schema = SpendBatchIn if "events" in body else SpendIn
    try:
        schema.model_validate(body)
    except PydanticValidationError as invalid:
        lines = []
        for e in invalid.errors():
            loc = [str(part) for part in e["loc"] if "[" not in str(part)]
            msg = UNKNOWN_FIELD if e["type"] == "extra_forbidden" else e["msg"]
            if loc[:1] == ["events"] and len(loc) >= 3:
                lines.append(f"index {loc[1]}: {'.'.join(loc[2:])}: {msg}")
            else:
                lines.append(f"{'.'.join(loc)}: {msg}")
        return lines
    return None


DATABASE_BUSY = (
    "database: busy or unreachable, so the request may not have been recorded; send it "
    "again as it was (each idempotency_key is recorded once)"
)


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def database_busy(request: HttpRequest, error: Exception) -> HttpResponse:
    """A lock wait that timed out or a lost connection. The transaction was rolled back
    (or, if the connection died while committing, may have gone through): either way
    the same request again is safe."""
    logger.warning("%s %s: database error, answered 503: %s", request.method, request.path, error)
    response = api.create_response(request, {"detail": [DATABASE_BUSY]}, status=503)
    response["Retry-After"] = "1"
    return response


Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]


# --- Spend -----------------------------------------------------------------------------


class SpendIn(Schema):
    # A misspelt field ("occured_at") must not be dropped silently.
    model_config = ConfigDict(extra="forbid")

    # Strict: JSON true or "1.0" is not campaign 1.
    campaign_id: int = Field(ge=1, le=MAX_ID, strict=True)
    amount: str = Field(
        description="Decimal string, up to 6 places, e.g. '12.50'",
        max_length=64,
        examples=["12.50"],
    )
    # Text, parsed by the services like every other interface's: a JSON number is not
    # read as a Unix time.
    occurred_at: str | None = Field(
        None,
        max_length=64,
        description="ISO-8601 with an offset (without one, UTC). Default: now. At most 5 "
        "minutes ahead, at most 400 days back.",
        examples=["2026-11-27T14:30:00+00:00"],
        json_schema_extra={"format": "date-time"},
    )
    idempotency_key: str = Field(min_length=1, max_length=255)


class SpendBatchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    events: list[SpendIn] = Field(min_length=1, max_length=MAX_BATCH)


class SpendResultOut(Schema):
    index: int
    idempotency_key: str
    status: Literal["recorded", "already_recorded"]


class StateChangeOut(Schema):
    campaign_id: int
    name: str
    is_active: bool
    pause_reasons: list[str]
    change: str


class SpendOut(Schema):
    results: list[SpendResultOut]
    state_changes: list[StateChangeOut]


def unknown_query(request: HttpRequest, schema: type[Schema], what: str) -> Status[object] | None:
    """A 422 naming each query parameter `schema` does not have, or None."""
    unknown = sorted(set(request.GET) - set(schema.model_fields))
    if not unknown:
        return None
    return Status(422, {"detail": [f"query.{name}: unknown {what}" for name in unknown]})


def visible_brands(api_key: ApiKey) -> QuerySet[Brand]:
    return Brand.objects.all() if api_key.all_brands else api_key.brands.all()


@api.post(
    "/spend",
    response={
        200: SpendOut,
        400: ErrorOut,
        401: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
        503: ErrorOut,
    },
    summary="Record one spend or a batch (all or nothing)",
)
def post_spend(request: HttpRequest, payload: SpendIn | SpendBatchIn) -> Status[object]:
    api_key: ApiKey = request.auth  # type: ignore[attr-defined]  # set by KeyAuth
    events = payload.events if isinstance(payload, SpendBatchIn) else [payload]
    allowed = set(
        Campaign.objects.filter(
            brand__in=visible_brands(api_key), pk__in=[e.campaign_id for e in events]
        ).values_list("pk", flat=True)
    )
    hidden = [n for n, e in enumerate(events) if e.campaign_id not in allowed]
    if hidden:
        # Another brand's campaign looks exactly like a missing one.
        missing = "index {}: campaign_id: no campaign with id {}"
        return Status(404, {"detail": [missing.format(n, events[n].campaign_id) for n in hidden]})
    try:
        result = record_spend_batch(
            [SpendInput(e.campaign_id, e.amount, e.occurred_at, e.idempotency_key) for e in events],
            source=SpendSource.API,
            numbers=range(len(events)),
            label="index",
        )
    except SpendConflict as error:
        # Keys are unique across brands; another brand's spend must not show through.
        foreign = set(
            SpendEvent.objects.filter(idempotency_key__in=[e.idempotency_key for e in events])
            .exclude(brand__in=visible_brands(api_key))
            .values_list("idempotency_key", flat=True)
        )
        if foreign:
            return Status(409, {"detail": [
                f"index {n}: idempotency_key: {KEY_TAKEN}"
                for n, e in enumerate(events) if e.idempotency_key in foreign
            ]})  # fmt: skip
        return Status(409, {"detail": error.message_dict.get("events") or [describe(error)]})
    except ValidationError as error:
        return Status(422, {"detail": error.message_dict.get("events") or [describe(error)]})
    return Status(
        200,
        {
            "results": [
                {"index": n, "idempotency_key": e.idempotency_key, "status": status}
                for n, (e, status) in enumerate(zip(events, result.outcomes, strict=True))
            ],
            "state_changes": [state_change(s) for s in result.changes],
        },
    )


class SpendLookup(Schema):
    idempotency_key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)


class SpendEventOut(Schema):
    idempotency_key: str
    campaign_id: int
    brand_id: int
    amount: Money
    occurred_at: datetime
    recorded_at: datetime
    source: str


KEY_TAKEN = "already used for a different spend; use a new key for a new spend"
NOT_RECORDED = (
    "idempotency_key: no spend is recorded with this key; send the spend again with the "
    "same key (safe: a key is recorded once)"
)


@api.get(
    "/spend",
    response={200: SpendEventOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="Look a spend up by its idempotency key",
)
def get_spend(request: HttpRequest, lookup: Query[SpendLookup]) -> Status[object]:
    """How a producer finds out whether a spend it sent (or queued) was recorded."""
    if unknown := unknown_query(request, SpendLookup, "parameter"):
        return unknown
    event = SpendEvent.objects.filter(
        idempotency_key=lookup.idempotency_key,
        brand__in=visible_brands(request.auth),  # type: ignore[attr-defined]  # set by KeyAuth
    ).first()
    if event is None:
        return Status(404, {"detail": [NOT_RECORDED]})
    return Status(
        200,
        {
            "idempotency_key": event.idempotency_key,
            "campaign_id": event.campaign_id,
            "brand_id": event.brand_id,
            "amount": money(event.amount),
            "occurred_at": event.occurred_at,
            "recorded_at": event.recorded_at,
            "source": event.source,
        },
    )


def state_change(state: CampaignState) -> dict[str, object]:
    return {
        "campaign_id": state.campaign_id,
        "name": state.name,
        "is_active": state.is_active,
        "pause_reasons": [str(r) for r in state.pause_reasons],
        "change": state.transition,
    }


# --- Status ----------------------------------------------------------------------------


class BrandOut(Schema):
    id: int
    name: str
    timezone: str
    is_active: bool
    local_time: datetime
    daily_budget: Money
    monthly_budget: Money
    spend_today: Money
    spend_this_month: Money
    left_today: Money = Field(description="What today's budget still allows; 0 once spent")
    left_this_month: Money = Field(description="What this month's budget still allows")
    # Spend goes on being recorded past a budget (a paused campaign's spend still counts)
    # and a budget can be lowered below the spend: "left" alone would hide by how much.
    over_today: Money = Field(description="How far spend today has passed the daily budget")
    over_this_month: Money = Field(
        description="How far spend this month has passed the monthly budget"
    )
    pacing_today: str
    pacing_this_month: str


def money(amount: Decimal) -> str:
    return str(canonical(amount))


def brand_out(brand: Brand) -> dict[str, object]:
    now = timezone.now()
    today, month = standing(brand, now)
    return {
        "id": brand.pk,
        "name": brand.name,
        "timezone": brand.timezone,
        "is_active": brand.is_active,
        "local_time": now.astimezone(brand.zone),
        "daily_budget": money(brand.daily_budget),
        "monthly_budget": money(brand.monthly_budget),
        "spend_today": money(today.spend),
        "spend_this_month": money(month.spend),
        "left_today": money(today.left),
        "left_this_month": money(month.left),
        "over_today": money(over(today.spend, today.budget)),
        "over_this_month": money(over(month.spend, month.budget)),
        "pacing_today": str(today.pacing),
        "pacing_this_month": str(month.pacing),
    }


@api.get("/brands", response={200: list[BrandOut], 400: ErrorOut, 401: ErrorOut})
def list_brands(request: HttpRequest) -> Status[object]:
    brands = visible_brands(request.auth).filter(archived_at__isnull=True)  # type: ignore[attr-defined]  # set by KeyAuth
    return Status(200, [brand_out(b) for b in brands])


@api.get(
    "/brands/{brand_id}",
    response={200: BrandOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
)
def get_brand(request: HttpRequest, brand_id: Id) -> Status[object]:
    brand = visible_brands(request.auth).filter(pk=brand_id).first()  # type: ignore[attr-defined]  # set by KeyAuth
    if brand is None:
        return Status(404, {"detail": f"no brand with id {brand_id}"})
    return Status(200, brand_out(brand))


class CampaignOut(Schema):
    id: int
    brand_id: int
    name: str
    is_enabled: bool
    is_active: bool
    pause_reasons: list[str]
    daily_budget: Money | None
    daily_spend: Money
    schedule: str | None
    next_schedule_change: datetime | None


def campaign_out(campaign: Campaign) -> dict[str, object]:
    now = timezone.now()
    windows = campaign.schedule.rule_windows() if campaign.schedule else None
    return {
        "id": campaign.pk,
        "brand_id": campaign.brand_id,
        "name": campaign.name,
        "is_enabled": campaign.is_enabled,
        "is_active": campaign.is_active,
        "pause_reasons": [str(r) for r in campaign.pause_reasons],
        "daily_budget": money(campaign.daily_budget) if campaign.daily_budget is not None else None,
        "daily_spend": money(campaign.spend_today(now)),
        "schedule": schedule_summary(windows) if windows is not None else None,
        "next_schedule_change": next_schedule_change(windows, now, campaign.brand.zone),
    }


class CampaignFilters(Schema):
    brand: int | None = Field(None, ge=1, le=MAX_ID)
    active: bool | None = None


def visible_campaigns(api_key: ApiKey) -> QuerySet[Campaign]:
    return (
        Campaign.objects.filter(brand__in=visible_brands(api_key))
        .select_related("brand", "schedule")
        .prefetch_related("schedule__windows")
    )


@api.get(
    "/campaigns", response={200: list[CampaignOut], 400: ErrorOut, 401: ErrorOut, 422: ErrorOut}
)
def list_campaigns(request: HttpRequest, filters: Query[CampaignFilters]) -> Status[object]:
    if unknown := unknown_query(request, CampaignFilters, "filter"):
        return unknown  # a misspelt filter must not silently return every campaign
    # Lists leave out what is archived; its own URL still answers.
    campaigns = visible_campaigns(request.auth).filter(  # type: ignore[attr-defined]  # set by KeyAuth
        archived_at__isnull=True, brand__archived_at__isnull=True
    )
    if filters.brand is not None:
        campaigns = campaigns.filter(brand_id=filters.brand)
    if filters.active is not None:
        campaigns = campaigns.filter(is_active=filters.active)
    return Status(200, [campaign_out(c) for c in campaigns])


@api.get(
    "/campaigns/{campaign_id}",
    response={200: CampaignOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
)
def get_campaign(request: HttpRequest, campaign_id: Id) -> Status[object]:
    campaign = visible_campaigns(request.auth).filter(pk=campaign_id).first()  # type: ignore[attr-defined]  # set by KeyAuth
    if campaign is None:
        return Status(404, {"detail": f"no campaign with id {campaign_id}"})
    return Status(200, campaign_out(campaign))


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's own 400s (a malformed header or host, too many fields) in JSON for
    API clients, its HTML page for everyone else."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "bad request: the request could not be read"}, status=400)
    return defaults.bad_request(request, exception)


# --- Health ----------------------------------------------------------------------------


class HealthOut(Schema):
    database: str
    broker: str


@api.get("/health", auth=None, response={200: HealthOut, 400: ErrorOut, 503: HealthOut})
def health(request: HttpRequest) -> Status[object]:
    """Database and broker reachability; no key needed, so no detail is given away
    (`manage.py health` gives the details, and checks a worker too)."""
    status = {c.name: "ok" if c.ok else "unreachable" for c in (database(), broker(timeout=2))}
    return Status(200 if set(status.values()) == {"ok"} else 503, status)
