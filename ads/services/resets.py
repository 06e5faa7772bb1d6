"""Periodic work: resets into new local days and months, and reconciliation of the
counters against the ledger.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Q, Sum

from ads.models import (
    Brand,
    Campaign,
    SettingChange,
    SpendEvent,
)
from ads.rules import (
    day_bounds,
    local_date,
    month_bounds,
    month_start,
)
from ads.services.edits import _audit_text
from ads.services.enforcement import (
    BRANDS_PER_TRANSACTION,
    CampaignState,
    RefreshResult,
    _evaluate,
    _lock_brands,
    _roll_over,
    behind,
    refresh_campaign_states,
)
from ads.sql import chunked

logger = logging.getLogger(__name__)


# --- Periodic work: resets and reconciliation ---------------------------------------


def stale_brand_ids(*, at: datetime, period: Literal["day", "month"]) -> list[int]:
    """Brands whose counters belong to an earlier local day (or month) than `at`'s."""
    stale = Q(pk__in=[])
    for zone_name in Brand.objects.order_by().values_list("timezone", flat=True).distinct():
        today = local_date(at, ZoneInfo(zone_name))
        marker = (
            behind("counters_day", today)
            if period == "day"
            else behind("counters_month", month_start(today))
        )
        stale |= Q(timezone=zone_name) & marker
    return list(Brand.objects.filter(stale).order_by("pk").values_list("pk", flat=True))


def reset_periods(*, at: datetime, actor: str, period: Literal["day", "month"]) -> RefreshResult:
    """Roll the counters of brands whose local day (or month) has changed into the new
    period and resume what was paused only for budget. Idempotent: a second run, or
    one running at the same time, finds nothing stale; a missed run is caught up."""
    return refresh_campaign_states(
        at=at, actor=actor, brand_ids=stale_brand_ids(at=at, period=period)
    )


@dataclass(frozen=True, slots=True)
class Drift:
    """A counter that disagreed with the ledger, and was repaired."""

    brand_id: int
    campaign_id: int | None
    name: str  # of the brand, or of the campaign
    counter: str
    period: date
    found: Decimal
    expected: Decimal

    @property
    def delta(self) -> Decimal:
        return self.found - self.expected


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    drifts: tuple[Drift, ...]
    changes: tuple[CampaignState, ...]


def reconcile_counters(*, at: datetime, actor: str) -> ReconcileResult:
    """Recompute every counter of the current periods from the ledger; repair, audit
    and log each one that differs, then re-evaluate the brands concerned."""
    drifts: list[Drift] = []
    changes: list[CampaignState] = []
    brand_ids = list(Brand.objects.order_by("pk").values_list("pk", flat=True))
    for chunk in chunked(brand_ids, BRANDS_PER_TRANSACTION):
        with transaction.atomic():
            _roll_over(_lock_brands(chunk), at=at)
            found = _reconcile_chunk(list(Brand.objects.filter(pk__in=chunk)), at=at)
            for drift in found:
                model = Brand if drift.campaign_id is None else Campaign
                pk = drift.brand_id if drift.campaign_id is None else drift.campaign_id
                model.objects.filter(pk=pk).update(**{drift.counter: drift.expected})
                logger.warning(
                    "counter %s of %s %s (%s) for %s was %s, ledger says %s (delta %s): "
                    "repaired",
                    drift.counter, model._meta.model_name, pk, drift.name, drift.period,
                    drift.found, drift.expected, drift.delta,
                )  # fmt: skip
            SettingChange.objects.bulk_create(
                SettingChange(
                    changed_at=at,
                    actor=actor,
                    object_type="brand" if d.campaign_id is None else "campaign",
                    object_id=d.brand_id if d.campaign_id is None else d.campaign_id,
                    object_repr=f"{d.name}: {d.counter} for {d.period}",
                    field=d.counter,
                    old_value=_audit_text(d.found),
                    new_value=_audit_text(d.expected),
                )
                for d in found
            )
            if found:
                states, _ = _evaluate(sorted({d.brand_id for d in found}), at=at, actor=actor)
                changes += (s for s in states if s.changed)
            drifts += found
    return ReconcileResult(drifts=tuple(drifts), changes=tuple(changes))


def _reconcile_chunk(brands: Sequence[Brand], *, at: datetime) -> list[Drift]:
    """Compare the counters of rolled-over brands with ledger sums, zone by zone."""
    drifts: list[Drift] = []
    # Each brand against the period its counters belong to (after the roll-over, the
    # current one, or a later one when `at` is behind another writer's clock).
    by_zone: dict[tuple[str, date], list[Brand]] = defaultdict(list)
    for brand in brands:
        by_zone[brand.timezone, brand.counting_day(at)].append(brand)
    for (zone_name, day), zone_brands in by_zone.items():
        zone = ZoneInfo(zone_name)
        ids = [b.pk for b in zone_brands]
        spend = SpendEvent.objects.filter(brand_id__in=ids).order_by()
        day_start_, day_end = day_bounds(day, zone)
        month_start_, month_end = month_bounds(month_start(day), zone)
        today = spend.filter(occurred_at__gte=day_start_, occurred_at__lt=day_end)
        month = spend.filter(occurred_at__gte=month_start_, occurred_at__lt=month_end)
        brand_day = dict(today.values_list("brand_id").annotate(total=Sum("amount")))
        brand_month = dict(month.values_list("brand_id").annotate(total=Sum("amount")))
        campaign_day = dict(today.values_list("campaign_id").annotate(total=Sum("amount")))
        for brand in zone_brands:
            for counter, period, ledger in (
                ("current_daily_spend", day, brand_day),
                ("current_monthly_spend", month_start(day), brand_month),
            ):
                found, expected = getattr(brand, counter), ledger.get(brand.pk, Decimal(0))
                if found != expected:
                    drifts.append(
                        Drift(brand.pk, None, brand.name, counter, period, found, expected)
                    )
        campaigns = Campaign.objects.filter(brand_id__in=ids).order_by("pk")
        for pk, brand_id, name, found in campaigns.values_list(
            "pk", "brand_id", "name", "daily_spend"
        ):
            expected = campaign_day.get(pk, Decimal(0))
            if found != expected:
                drifts.append(Drift(brand_id, pk, name, "daily_spend", day, found, expected))
    return drifts
