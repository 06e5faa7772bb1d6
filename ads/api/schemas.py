"""The API's request and response shapes. Limits come from `ads.validation` and
`ads.money`, so the OpenAPI document states the same limits the services apply."""

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from ninja import Path as PathParam
from pydantic import AfterValidator, ConfigDict, WithJsonSchema
from pydantic_core import PydanticCustomError

from ads.models import EventType
from ads.money import SPEND_DECIMAL_PLACES, decimal_text
from ads.services import MAX_BATCH
from ads.validation import (
    CURRENCY_CODE_PATTERN,
    CURRENCY_INVALID,
    CURSOR_PATTERN,
    EVENT_PAGE_DEFAULT,
    EVENT_PAGE_MAX,
    EVENT_TYPE_UNKNOWN,
    FUTURE_TOLERANCE_TEXT,
    MAX_CURSOR_LENGTH,
    MAX_ID,
    MAX_KEY_LENGTH,
    PAST_LIMIT_TEXT,
    shown,
)

# Amounts and times arrive as text and are parsed by the services, like every other
# interface's input; this only bounds what is read.
MAX_TEXT_LENGTH = 64

Money = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["12.50"])]
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def money(amount: Decimal) -> str:
    return decimal_text(amount)


def three_letters(value: str) -> str:
    """What the document promises (three letters), refused in the services' words;
    whether it is an ISO 4217 code, and the brand's, the services say."""
    if not re.fullmatch(CURRENCY_CODE_PATTERN, value):
        raise PydanticCustomError("currency_invalid", CURRENCY_INVALID, {"value": shown(value)})
    return value


CurrencyCode = Annotated[
    str,
    AfterValidator(three_letters),
    WithJsonSchema(
        {"type": "string", "pattern": CURRENCY_CODE_PATTERN, "minLength": 3, "maxLength": 3}
    ),
]
# The brand's currency, beside the amounts of every answer: amounts alone do not say
# whether 12000 is yen or euros.
BrandCurrency = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the brand's currency: every amount here is in it",
        examples=["EUR"],
    ),
]


class ErrorOut(Schema):
    detail: str | list[str]


# --- Spend -----------------------------------------------------------------------------


class SpendIn(Schema):
    # A misspelt field ("occured_at") must not be dropped silently.
    model_config = ConfigDict(extra="forbid")

    # Strict: JSON true or "1.0" is not campaign 1.
    campaign_id: int = Field(ge=1, le=MAX_ID, strict=True)
    amount: str = Field(
        description=f"Decimal string, up to {SPEND_DECIMAL_PLACES} places, e.g. '12.50'",
        max_length=MAX_TEXT_LENGTH,
        examples=["12.50"],
    )
    # Text, parsed by the services like every other interface's: a JSON number is not
    # read as a Unix time.
    occurred_at: str | None = Field(
        None,
        max_length=MAX_TEXT_LENGTH,
        description="ISO-8601 with an offset (without one, UTC). Default: now. At most "
        f"{FUTURE_TOLERANCE_TEXT} ahead, at most {PAST_LIMIT_TEXT} back.",
        examples=["2026-11-27T14:30:00+00:00"],
        json_schema_extra={"format": "date-time"},
    )
    idempotency_key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    currency: CurrencyCode | None = Field(
        None,
        description="ISO 4217 code of the currency the amount is in, in any case (EUR, usd). "
        "Optional; when given it must be the brand's currency, or the spend is refused: "
        "nothing is converted between currencies.",
        examples=["EUR"],
    )


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


class SpendLookup(Schema):
    idempotency_key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)


class SpendEventOut(Schema):
    idempotency_key: str
    campaign_id: int
    brand_id: int
    amount: Money
    currency: BrandCurrency
    occurred_at: datetime
    recorded_at: datetime
    source: str


# --- Status ----------------------------------------------------------------------------


class BrandOut(Schema):
    id: int
    name: str
    timezone: str
    currency: BrandCurrency
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


class CampaignOut(Schema):
    id: int
    brand_id: int
    name: str
    is_enabled: bool
    is_active: bool
    pause_reasons: list[str]
    currency: BrandCurrency
    daily_budget: Money | None
    daily_spend: Money
    schedule: str | None
    next_schedule_change: datetime | None


class CampaignFilters(Schema):
    brand: int | None = Field(None, ge=1, le=MAX_ID)
    active: bool | None = None


class HealthOut(Schema):
    database: str
    broker: str


# --- Events ----------------------------------------------------------------------------


# Checked by the view, in the feed's own words (a pattern's message would not say what
# a cursor is); the document states its form. Optional: left out, the feed starts at
# the beginning.
Cursor = Annotated[
    str | None,
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_CURSOR_LENGTH,
            "pattern": CURSOR_PATTERN,
            "examples": ["djE6NzQ1OjEwMjQ"],
        }
    ),
]


def event_types(values: list[str] | None) -> list[str] | None:
    """Each type known, or the first unknown one named in a line of its own (a comma list
    is one unknown type: the parameter is repeated for several)."""
    for value in values or ():
        if value not in EventType.values:
            raise PydanticCustomError(
                "event_type",
                EVENT_TYPE_UNKNOWN,
                {"value": shown(value), "types": ", ".join(EventType.values)},
            )
    return values


EventTypes = Annotated[
    list[str] | None,
    AfterValidator(event_types),
    WithJsonSchema({"type": "array", "items": {"type": "string", "enum": EventType.values}}),
]


class EventQuery(Schema):
    after: Cursor = Field(
        None,
        description="The next_cursor of the previous page, unchanged. Left out: from the "
        "first event.",
    )
    type: EventTypes = Field(
        None,
        description="Only events of this type. Repeat the parameter for several types "
        "(type=campaign.paused&type=campaign.resumed); left out: every type.",
    )
    limit: int = Field(
        EVENT_PAGE_DEFAULT,
        ge=1,
        le=EVENT_PAGE_MAX,
        description=f"Events per page, at most {EVENT_PAGE_MAX}.",
    )


class EventOut(Schema):
    id: str = Field(
        description="Unique: a receiver de-duplicates by it.",
        examples=["evt_5f1c0e2a9b7d4c38a6e4f0b2d8c17a93"],
    )
    # Not an enum: new kinds of events come with new features, and a receiver skips
    # what it does not know instead of failing on it.
    type: str = Field(
        description="What happened: " + ", ".join(EventType.values) + " (more may come).",
        examples=[EventType.CAMPAIGN_PAUSED.value],
    )
    created_at: datetime
    brand_id: int
    campaign_id: int | None
    stream: str = Field(
        description="campaign:<id> for a campaign's events, brand:<id> for a brand's own",
        examples=["campaign:42"],
    )
    sequence: int = Field(
        description="1, 2, 3... within the stream, without gaps: a receiver that has "
        "sequence n of a stream can drop anything at or below it."
    )
    payload: dict[str, Any] = Field(
        description="Self-contained: the state, reasons and figures the event is about, "
        "and the actor."
    )


class EventPageOut(Schema):
    events: list[EventOut]
    next_cursor: str = Field(
        description="Where the next page starts: store it and pass it as `after`, now or "
        "after any downtime. The `after` given (or the beginning) when the page is empty."
    )
    has_more: bool = Field(
        description="More events can be read now; when false, poll again later with next_cursor."
    )
