"""The API's request and response shapes. Limits come from `ads.validation` and
`ads.money`, so the OpenAPI document states the same limits the services apply."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Field, Schema
from ninja import Path as PathParam
from pydantic import ConfigDict

from ads.money import SPEND_DECIMAL_PLACES, canonical
from ads.services import MAX_BATCH
from ads.validation import FUTURE_TOLERANCE_TEXT, MAX_ID, MAX_KEY_LENGTH, PAST_LIMIT_TEXT

# Amounts and times arrive as text and are parsed by the services, like every other
# interface's input; this only bounds what is read.
MAX_TEXT_LENGTH = 64

Money = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["12.50"])]
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def money(amount: Decimal) -> str:
    return str(canonical(amount))


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
    occurred_at: datetime
    recorded_at: datetime
    source: str


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


class CampaignFilters(Schema):
    brand: int | None = Field(None, ge=1, le=MAX_ID)
    active: bool | None = None


class HealthOut(Schema):
    database: str
    broker: str
