"""POST /spend (one spend or a batch, all or nothing) and GET /spend (look one up)."""

from typing import Annotated

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Query, Router, Status
from pydantic import ValidationError as PydanticValidationError
from pydantic import ValidatorFunctionWrapHandler, WrapValidator

from ads.api.auth import caller
from ads.api.errors import InputRefused, unknown_query
from ads.api.schemas import (
    ErrorOut,
    SpendBatchIn,
    SpendEventOut,
    SpendIn,
    SpendLookup,
    SpendOut,
    money,
)
from ads.models import Campaign, SpendEvent, SpendSource
from ads.selectors import visible_brands
from ads.services import CampaignState, SpendInput, record_spend_batch
from ads.validation import SpendConflict, describe

router = Router()

UNKNOWN_FIELD = (
    "unknown field; a spend has campaign_id, amount, occurred_at, idempotency_key and "
    "currency, a batch has events"
)
KEY_TAKEN = "already used for a different spend; use a new key for a new spend"
NOT_RECORDED = (
    "idempotency_key: no spend is recorded with this key; send the spend again with the "
    "same key (safe: a key is recorded once)"
)
CAMPAIGN_HIDDEN = "index {}: campaign_id: no campaign with id {}"


def body_lines(invalid: PydanticValidationError) -> list[str]:
    """A spend body's errors in the services' words: 'index 3: amount: ...'."""
    lines = []
    for e in invalid.errors():
        # Without pydantic's names for its own validators ("function-wrap[...]").
        loc = [str(part) for part in e["loc"] if "[" not in str(part)]
        msg = UNKNOWN_FIELD if e["type"] == "extra_forbidden" else e["msg"]
        if loc[:1] == ["events"] and len(loc) >= 3:
            lines.append(f"index {loc[1]}: {'.'.join(loc[2:])}: {msg}")
        else:
            lines.append(f"{'.'.join(loc)}: {msg}")
    return lines


def one_shape(value: object, handler: ValidatorFunctionWrapHandler) -> SpendIn | SpendBatchIn:
    """A JSON object is checked against the one shape it has (a batch has "events"),
    not the union: pydantic would report both shapes, with 'Field required' for the
    fields of the other one."""
    if not isinstance(value, dict):
        return handler(value)  # type: ignore[no-any-return]  # the union's own verdict
    schema = SpendBatchIn if "events" in value else SpendIn
    try:
        return schema.model_validate(value)
    except PydanticValidationError as invalid:
        raise InputRefused(body_lines(invalid)) from None


# The OpenAPI document shows the union; the validator only changes how errors read.
SpendBody = Annotated[SpendIn | SpendBatchIn, WrapValidator(one_shape)]


@router.post(
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
def post_spend(request: HttpRequest, payload: SpendBody) -> Status[object]:
    api_key = caller(request)
    events = payload.events if isinstance(payload, SpendBatchIn) else [payload]
    allowed = set(
        Campaign.objects.filter(
            brand__in=visible_brands(api_key), pk__in=[e.campaign_id for e in events]
        ).values_list("pk", flat=True)
    )
    hidden = [n for n, e in enumerate(events) if e.campaign_id not in allowed]
    if hidden:
        # Another brand's campaign looks exactly like a missing one.
        lines = [CAMPAIGN_HIDDEN.format(n, events[n].campaign_id) for n in hidden]
        return Status(404, {"detail": lines})
    try:
        result = record_spend_batch(
            [
                SpendInput(e.campaign_id, e.amount, e.occurred_at, e.idempotency_key, e.currency)
                for e in events
            ],
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
            taken = [
                f"index {n}: idempotency_key: {KEY_TAKEN}"
                for n, e in enumerate(events)
                if e.idempotency_key in foreign
            ]
            return Status(409, {"detail": taken})
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


def state_change(state: CampaignState) -> dict[str, object]:
    return {
        "campaign_id": state.campaign_id,
        "name": state.name,
        "is_active": state.is_active,
        "pause_reasons": [str(r) for r in state.pause_reasons],
        "change": state.transition,
    }


@router.get(
    "/spend",
    response={200: SpendEventOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="Look a spend up by its idempotency key",
)
def get_spend(request: HttpRequest, lookup: Query[SpendLookup]) -> Status[object]:
    """How a producer finds out whether a spend it sent (or queued) was recorded."""
    if unknown := unknown_query(request, SpendLookup, "parameter"):
        return unknown
    event = (
        SpendEvent.objects.filter(
            idempotency_key=lookup.idempotency_key, brand__in=visible_brands(caller(request))
        )
        .select_related("brand")
        .first()
    )
    if event is None:
        return Status(404, {"detail": [NOT_RECORDED]})
    return Status(
        200,
        {
            "idempotency_key": event.idempotency_key,
            "campaign_id": event.campaign_id,
            "brand_id": event.brand_id,
            "amount": money(event.amount),
            "currency": event.brand.currency,
            "occurred_at": event.occurred_at,
            "recorded_at": event.recorded_at,
            "source": event.source,
        },
    )
