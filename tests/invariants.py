"""The ledger invariants every reliability scenario checks at its end (issue 8).

They are computed from the ledger and the rules, independently of the counters and
states they judge: conservation (counters = ledger sums of their period, campaign
counters add up to their brand's), exactly once (one row per accepted key), immutability
(no row changed or vanished since a snapshot) and states (every campaign's `is_active`
and `pause_reasons` are what the rules say for the final data and time).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from ads.models import Brand, Campaign, SpendEvent
from ads.rules import (
    CampaignFacts,
    day_bounds,
    local_date,
    month_bounds,
    month_start,
    pause_reasons,
    schedule_allows,
)

LEDGER_COLUMNS = (
    "pk", "idempotency_key", "campaign_id", "brand_id", "amount", "occurred_at", "recorded_at",
    "source",
)  # fmt: skip
LedgerRow = tuple[str, int, int, Decimal, datetime, datetime, str]


def snapshot_ledger() -> dict[int, LedgerRow]:
    """Every ledger row as it is now, by primary key."""
    return {
        pk: (key, campaign, brand, amount, occurred, recorded, source)
        for pk, key, campaign, brand, amount, occurred, recorded, source in (
            SpendEvent.objects.values_list(*LEDGER_COLUMNS)
        )
    }


@dataclass(frozen=True)
class Report:
    """What the checks measured, for the scenario's own assertions and for the log."""

    rows: int
    total: Decimal
    brands: int
    campaigns: int

    def __str__(self) -> str:
        return f"{self.rows} ledger rows, total {self.total}, {self.brands} brand(s) conserved"


def _ledger_total(start: datetime, end: datetime, **owner: int) -> Decimal:
    spend = SpendEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end, **owner)
    return spend.aggregate(total=Sum("amount"))["total"] or Decimal(0)


def assert_invariants(
    *,
    at: datetime,
    accepted_keys: Iterable[str] | None = None,
    before: dict[int, LedgerRow] | None = None,
    states_current: bool = True,
) -> Report:
    """Assert the four invariants at instant `at` and return what was measured.

    accepted_keys: every key the system acknowledged (None: the ledger's own keys).
    before: a `snapshot_ledger()` taken earlier; each of its rows must be unchanged.
    states_current: also require every brand's counters to belong to `at`'s period
    and every campaign's state to be what the rules say at `at`.
    """
    now = snapshot_ledger()
    keys = Counter(row[0] for row in now.values())
    twice = sorted(key for key, n in keys.items() if n > 1)
    assert not twice, f"recorded twice: {twice[:10]}"
    if accepted_keys is not None:
        accepted = set(accepted_keys)
        missing = sorted(accepted - keys.keys())
        unexpected = sorted(keys.keys() - accepted)
        assert not missing, f"acknowledged but missing: {len(missing)}, e.g. {missing[:10]}"
        assert not unexpected, f"recorded but never accepted: {unexpected[:10]}"
    if before is not None:
        changed = [pk for pk, row in before.items() if now.get(pk) != row]
        assert not changed, f"ledger rows updated or deleted: {changed[:10]}"

    brands = list(Brand.objects.order_by("pk"))
    campaigns = list(Campaign.objects.select_related("schedule").order_by("pk"))
    windows = {c.schedule_id: c.schedule.rule_windows() for c in campaigns if c.schedule}
    for brand in brands:
        zone = brand.zone
        if states_current:
            assert brand.counters_day == local_date(at, zone), f"{brand}: day not rolled"
        if brand.counters_day is None or brand.counters_month is None:
            continue
        day_start, day_end = day_bounds(brand.counters_day, zone)
        month_start_, month_end = month_bounds(brand.counters_month, zone)
        assert brand.counters_month == month_start(brand.counters_day), f"{brand}: markers"
        day_total = _ledger_total(day_start, day_end, brand_id=brand.pk)
        month_total = _ledger_total(month_start_, month_end, brand_id=brand.pk)
        assert (brand.current_daily_spend, brand.current_monthly_spend) == (
            day_total,
            month_total,
        ), f"{brand} {brand.counters_day}: counters differ from the ledger"
        own = [c for c in campaigns if c.brand_id == brand.pk]
        for campaign in own:
            expected = _ledger_total(day_start, day_end, campaign_id=campaign.pk)
            assert campaign.daily_spend == expected, f"{campaign}: daily spend vs ledger"
        assert sum((c.daily_spend for c in own), Decimal(0)) == brand.current_daily_spend
        if not states_current:
            continue
        for campaign in own:
            reasons = pause_reasons(
                CampaignFacts(
                    is_enabled=campaign.is_enabled,
                    brand_is_active=brand.is_active,
                    brand_daily_budget=brand.daily_budget,
                    brand_daily_spend=day_total,
                    brand_monthly_budget=brand.monthly_budget,
                    brand_monthly_spend=month_total,
                    daily_budget=campaign.daily_budget,
                    daily_spend=campaign.daily_spend,
                    in_schedule=schedule_allows(windows.get(campaign.schedule_id), at, zone),
                )
            )
            assert (campaign.is_active, campaign.pause_reasons) == (not reasons, reasons), (
                f"{campaign}: state differs from the rules at {at}"
            )
    total = sum((row[3] for row in now.values()), Decimal(0))
    return Report(rows=len(now), total=total, brands=len(brands), campaigns=len(campaigns))
