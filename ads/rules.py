"""Pure decisions: a campaign's state from data and a moment; brands' local periods.

Nothing here reads the database or the clock, so every rule can be tested with plain
values and reused by the services, the admin and (later) the API.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import models


class PauseReason(models.TextChoices):
    """Why a campaign may not serve. Declaration order is the order people read them in."""

    DISABLED = "disabled", "Disabled by a person"
    BRAND_INACTIVE = "brand_inactive", "Brand switched off"
    BRAND_MONTHLY_BUDGET = "brand_monthly_budget", "Brand monthly budget exhausted"
    BRAND_DAILY_BUDGET = "brand_daily_budget", "Brand daily budget exhausted"
    CAMPAIGN_DAILY_BUDGET = "campaign_daily_budget", "Campaign daily budget exhausted"
    OUTSIDE_SCHEDULE = "outside_schedule", "Outside its schedule"


BUDGET_REASONS = frozenset(
    {
        PauseReason.BRAND_MONTHLY_BUDGET,
        PauseReason.BRAND_DAILY_BUDGET,
        PauseReason.CAMPAIGN_DAILY_BUDGET,
    }
)


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """Everything the state rule needs about one campaign and its brand, now."""

    is_enabled: bool
    brand_is_active: bool
    brand_daily_budget: Decimal
    brand_daily_spend: Decimal
    brand_monthly_budget: Decimal
    brand_monthly_spend: Decimal
    daily_budget: Decimal | None
    daily_spend: Decimal
    schedule_allows: bool


def exhausted(spend: Decimal, budget: Decimal) -> bool:
    """A budget is used up once spend reaches it; a budget of 0 allows nothing."""
    return spend >= budget


def pause_reasons(facts: CampaignFacts) -> tuple[PauseReason, ...]:
    """Every rule that keeps the campaign from serving; empty means it may serve."""
    failing = {
        PauseReason.DISABLED: not facts.is_enabled,
        PauseReason.BRAND_INACTIVE: not facts.brand_is_active,
        PauseReason.BRAND_MONTHLY_BUDGET: exhausted(
            facts.brand_monthly_spend, facts.brand_monthly_budget
        ),
        PauseReason.BRAND_DAILY_BUDGET: exhausted(
            facts.brand_daily_spend, facts.brand_daily_budget
        ),
        PauseReason.CAMPAIGN_DAILY_BUDGET: facts.daily_budget is not None
        and exhausted(facts.daily_spend, facts.daily_budget),
        PauseReason.OUTSIDE_SCHEDULE: not facts.schedule_allows,
    }
    return tuple(reason for reason in PauseReason if failing[reason])


def local_date(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (in UTC) of a local calendar day.

    fold=0 picks the earlier of a repeated midnight; for a midnight skipped by DST it
    maps to the moment the clock jumps, which is the first instant of that day.
    """
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local day: 23, 24 or 25 hours long."""
    return day_start(day, zone), day_start(day + timedelta(days=1), zone)


def month_bounds(first_day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local month that begins on `first_day`."""
    next_month = (first_day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day_start(first_day, zone), day_start(next_month, zone)


def describe_transition(
    old_active: bool,
    old_reasons: tuple[PauseReason, ...],
    new_active: bool,
    new_reasons: tuple[PauseReason, ...],
) -> str:
    """'paused (+brand_daily_budget)', 'resumed (-brand_daily_budget)', ..."""
    if new_active != old_active:
        head = "resumed" if new_active else "paused"
    else:
        head = "running" if new_active else "still paused"
    changes = [f"+{r}" for r in new_reasons if r not in old_reasons]
    changes += [f"-{r}" for r in old_reasons if r not in new_reasons]
    return f"{head} ({', '.join(changes)})" if changes else head
