"""Periodic work: resets into new local days and months, and reconciliation of the
counters against the ledger.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Q

from ads.models import Brand, Campaign, SettingChange, SpendEvent
from ads.money import format_money
from ads.rules import CountingPeriod, day_bounds, local_date, month_bounds, month_start
from ads.services.enforcement import RefreshResult, refresh_campaign_states
from ads.services.kernel import (
    CampaignState,
    audit_text,
    behind,
    evaluate,
    exact_sums,
    in_brand_chunks,
    lock_brands,
    roll_over,
    within_limit,
)

logger = logging.getLogger(__name__)


# --- Periodic work: resets and reconciliation ---------------------------------------


def stale_brand_ids(*, at: datetime, period: Literal["day", "month"]) -> list[int]:
    """Brands whose counters belong to an earlier local day (or month) than `at`'s.
    Brands in a zone this machine does not know are included: the pass over them fails
    brand by brand, and says so, rather than forgetting them in silence."""
    stale = Q(pk__in=[])
    for zone_name in Brand.objects.order_by().values_list("timezone", flat=True).distinct():
        try:
            today = local_date(at, ZoneInfo(zone_name))
        except (ZoneInfoNotFoundError, ValueError):
            stale |= Q(timezone=zone_name)
            continue
        marker = (
            behind("counters_day", today)
            if period == "day"
            else behind("counters_month", month_start(today))
        )
        stale |= Q(timezone=zone_name) & marker
    # Archived brands are left out: restoring one, its next pass or spend rolls it over.
    current = Brand.objects.filter(stale, archived_at__isnull=True)
    return list(current.order_by("pk").values_list("pk", flat=True))


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
    and log each one that differs, then re-evaluate the brands concerned. A sum no
    counter can hold is logged and the counter kept at its limit; a brand whose data
    fails the pass is logged and skipped, and the others are reconciled."""

    def reconcile(chunk: Sequence[int]) -> ReconcileResult:
        roll_over(lock_brands(chunk), at=at)
        brands = list(Brand.objects.filter(pk__in=chunk))
        currency = {brand.pk: brand.currency for brand in brands}
        found = _reconcile_chunk(brands, at=at)
        for drift in found:
            money = partial(format_money, currency=currency[drift.brand_id])
            model = Brand if drift.campaign_id is None else Campaign
            pk = drift.brand_id if drift.campaign_id is None else drift.campaign_id
            model.objects.filter(pk=pk).update(**{drift.counter: drift.expected})
            logger.warning(
                "counter %s of %s %s (%s) for %s was %s, ledger says %s (delta %s): repaired",
                drift.counter,
                model._meta.model_name,
                pk,
                drift.name,
                drift.period,
                money(drift.found),
                money(drift.expected),
                money(drift.delta),
            )
        SettingChange.objects.bulk_create(
            SettingChange(
                changed_at=at,
                actor=actor,
                object_type="brand" if d.campaign_id is None else "campaign",
                object_id=d.brand_id if d.campaign_id is None else d.campaign_id,
                object_repr=f"{d.name}: {d.counter} for {d.period}",
                field=d.counter,
                old_value=audit_text(d.found),
                new_value=audit_text(d.expected),
            )
            for d in found
        )
        changes: tuple[CampaignState, ...] = ()
        if found:
            states, _ = evaluate(sorted({d.brand_id for d in found}), at=at, actor=actor)
            changes = tuple(s for s in states if s.changed)
        return ReconcileResult(drifts=tuple(found), changes=changes)

    brand_ids = list(Brand.objects.order_by("pk").values_list("pk", flat=True))
    done = in_brand_chunks(brand_ids, reconcile, what=actor)
    return ReconcileResult(
        drifts=tuple(d for result in done for d in result.drifts),
        changes=tuple(s for result in done for s in result.changes),
    )


def _reconcile_chunk(brands: Sequence[Brand], *, at: datetime) -> list[Drift]:
    """Compare the counters of rolled-over brands with ledger sums, zone by zone."""
    drifts: list[Drift] = []
    # Each brand against the period its counters belong to (after the roll-over, the
    # current one, or a later one when `at` is behind another writer's clock).
    by_zone: dict[tuple[str, CountingPeriod], list[Brand]] = defaultdict(list)
    for brand in brands:
        by_zone[brand.timezone, brand.counting_period(at)].append(brand)
    for (zone_name, counting), zone_brands in by_zone.items():
        zone, day = ZoneInfo(zone_name), counting.day
        ids = [b.pk for b in zone_brands]
        spend = SpendEvent.objects.filter(brand_id__in=ids)
        day_start_, day_end = day_bounds(day, zone)
        month_start_, month_end = month_bounds(counting.month, zone)
        today = spend.filter(occurred_at__gte=day_start_, occurred_at__lt=day_end)
        month = spend.filter(occurred_at__gte=month_start_, occurred_at__lt=month_end)
        brand_day = exact_sums(today, "brand_id")
        brand_month = exact_sums(month, "brand_id")
        campaign_day = exact_sums(today, "campaign_id")
        for brand in zone_brands:
            for counter, period, ledger in (
                ("current_daily_spend", day, brand_day),
                ("current_monthly_spend", counting.month, brand_month),
            ):
                found = getattr(brand, counter)
                expected = within_limit(
                    ledger.get(brand.pk, Decimal(0)),
                    owner="brand",
                    pk=brand.pk,
                    name=brand.name,
                    counter=counter,
                    period=period,
                )
                if found != expected:
                    drifts.append(
                        Drift(brand.pk, None, brand.name, counter, period, found, expected)
                    )
        campaigns = Campaign.objects.filter(brand_id__in=ids).order_by("pk")
        for campaign in campaigns.values("pk", "brand_id", "name", "daily_spend"):
            pk, name, found = campaign["pk"], campaign["name"], campaign["daily_spend"]
            expected = within_limit(
                campaign_day.get(pk, Decimal(0)),
                owner="campaign",
                pk=pk,
                name=name,
                counter="daily_spend",
                period=day,
            )
            if found != expected:
                drifts.append(
                    Drift(campaign["brand_id"], pk, name, "daily_spend", day, found, expected)
                )
    return drifts
