"""Spend around period boundaries, in-process (reliability issue, scenarios 9 and 10):
clocks still before a local midnight the counters have passed, and two days of Beat
ticks with hourly spends around each DST change, with the ledger invariants checked
after every tick.

tests/test_tasks.py checks single resets at midnight and one Beat day across each DST
change; the stream of spends from several processes across midnight is in
tests/reliability/test_period_boundaries.py. Inputs come from a seeded
`random.Random`; the measured figures are printed (`pytest -rP` shows them).
"""

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from ads import services, tasks
from ads.models import Brand, Campaign, CampaignStatusChange, SettingChange
from ads.rules import PauseReason, local_date
from tests.factories import BrandFactory, CampaignFactory
from tests.invariants import assert_invariants, snapshot_ledger
from tests.reliability.processes import report

# The night of scenario 9: midnight of Friday 27 November in Los Angeles.
NEXT_DAY = date(2026, 11, 28)
MIDNIGHT = datetime.combine(NEXT_DAY, time(0), ZoneInfo("America/Los_Angeles"))


@pytest.mark.django_db
def test_a_spend_on_a_clock_still_before_midnight_never_rolls_the_counters_back_a_day(
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    """Found by scenario 9's stream (tests/reliability/): the new day's counters must stay
    the new day's.

    A spend recorded with a time before midnight (a worker whose clock is behind, or a
    spend that read the clock before waiting for the brand's lock) once the counters
    are already on D+1 is a late report: the ledger and the month, not today's counter.
    """
    campaign = CampaignFactory.create(
        brand__timezone="America/Los_Angeles", brand__daily_budget=Decimal(10)
    )
    services.record_spend(campaign.pk, "4", idempotency_key="d", at=MIDNIGHT - timedelta(hours=1))
    services.record_spend(
        campaign.pk, "10", idempotency_key="d+1", at=MIDNIGHT + timedelta(minutes=1)
    )
    campaign.refresh_from_db()
    assert campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)  # D+1 is spent

    result = services.record_spend(
        campaign.pk, "1", idempotency_key="lagging", at=MIDNIGHT - timedelta(seconds=30)
    )

    campaign.refresh_from_db()
    brand = Brand.objects.get()
    assert (brand.counters_day, brand.current_daily_spend) == (NEXT_DAY, Decimal(10)), (
        f"counters rolled back to {brand.counters_day} ({brand.current_daily_spend}) and "
        f"the campaign became {'active' if campaign.is_active else 'paused'}: "
        f"{result.campaign.transition}"
    )
    assert brand.current_monthly_spend == Decimal(15)
    assert campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)
    time_machine.move_to(MIDNIGHT + timedelta(minutes=20), tick=False)
    tasks.reset_daily_budgets()
    assert_invariants(at=MIDNIGHT + timedelta(minutes=20), accepted_keys=["d", "d+1", "lagging"])


@pytest.mark.django_db
def test_tasks_on_a_clock_still_before_midnight_leave_the_new_day_alone(
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    """Enforcement, the reset and reconciliation on a worker whose clock is behind:
    no roll-back, and no false drift "repaired" into yesterday's numbers."""
    campaign = CampaignFactory.create(
        brand__timezone="America/Los_Angeles", brand__daily_budget=Decimal(10)
    )
    services.record_spend(campaign.pk, "4", idempotency_key="d", at=MIDNIGHT - timedelta(hours=1))
    services.record_spend(
        campaign.pk, "10", idempotency_key="d+1", at=MIDNIGHT + timedelta(minutes=1)
    )

    time_machine.move_to(MIDNIGHT - timedelta(seconds=5), tick=False)
    tasks.enforce_budget_limits()
    tasks.reset_daily_budgets()
    tasks.reconcile_spend_counters()

    brand = Brand.objects.get()
    campaign.refresh_from_db()
    assert (brand.counters_day, brand.current_daily_spend) == (NEXT_DAY, Decimal(10))
    assert campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)
    assert not SettingChange.objects.exists()  # reconcile found nothing to repair
    assert_invariants(at=MIDNIGHT + timedelta(minutes=2), accepted_keys=["d", "d+1"])


# --- 10. Two days of Beat ticks around each DST change -----------------------------------

DST_SEED = 10
TICK = timedelta(minutes=15)


def dst_change(zone: ZoneInfo, day: date) -> datetime:
    """The first quarter hour of `day`'s night whose UTC offset differs from the one
    before: the DST change."""
    instant = datetime.combine(day - timedelta(days=1), time(12), zone).astimezone(UTC)
    while instant.astimezone(zone).utcoffset() == (instant + TICK).astimezone(zone).utcoffset():
        instant += TICK
    return instant + TICK


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("zone_name", "day"),
    [
        pytest.param("America/New_York", date(2026, 3, 8), id="new-york-23h-day"),
        pytest.param("America/New_York", date(2026, 11, 1), id="new-york-25h-day"),
        pytest.param("America/Santiago", date(2026, 9, 6), id="santiago-midnight-skipped"),
        pytest.param("America/Havana", date(2026, 11, 1), id="havana-midnight-repeated"),
    ],
)
def test_beat_and_hourly_spend_across_a_dst_night_reset_once_per_local_date(
    zone_name: str, day: date, time_machine: time_machine.TimeMachineFixture
) -> None:
    zone = ZoneInfo(zone_name)
    rng = random.Random(f"{DST_SEED}-{zone_name}-{day}")
    change = dst_change(zone, day)
    campaigns = CampaignFactory.create_batch(
        2, brand=BrandFactory.create(timezone=zone_name, daily_budget=Decimal(10))
    )  # about ten hourly spends of 0.50-1.50 use up a day
    keys: list[str] = []
    markers: list[tuple[datetime, date]] = []  # each change of counters_day seen
    budget_paused: dict[date, set[int]] = {}  # campaigns still budget-paused at a day's end
    ledger = snapshot_ledger()

    instant, last_tick = change - timedelta(hours=24), change + timedelta(hours=24)
    while instant <= last_tick:
        time_machine.move_to(instant, tick=False)
        before = Brand.objects.get().counters_day
        tasks.reset_daily_budgets()
        tasks.enforce_budget_limits()
        if instant.minute == 0:  # on the hour (whole-hour offsets here): one spend
            keys.append(f"{zone_name}-{instant:%Y%m%d%H}")
            amount = Decimal(rng.randint(50, 150)) / 100
            services.record_spend(rng.choice(campaigns).pk, amount, idempotency_key=keys[-1])
        counters_day = Brand.objects.get().counters_day
        assert counters_day is not None, "the reset left the brand without a counter day"
        if counters_day != before:
            markers.append((instant, counters_day))
        budget_paused[local_date(instant, zone)] = set(
            Campaign.objects.filter(
                pause_reasons__contains=PauseReason.BRAND_DAILY_BUDGET.value
            ).values_list("pk", flat=True)
        )
        assert_invariants(at=instant, accepted_keys=keys, before=ledger)
        ledger = snapshot_ledger()
        instant += TICK

    local_dates = sorted(budget_paused)
    assert [d for _, d in markers] == local_dates  # the first tick, then once per date
    for at, marker in markers[1:]:
        assert local_date(at - TICK, zone) < marker == local_date(at, zone)  # its first tick
    resumes = CampaignStatusChange.objects.filter(
        new_is_active=True, old_pause_reasons__contains=PauseReason.BRAND_DAILY_BUDGET.value
    )
    seen = sorted(
        (local_date(r.changed_at, zone), r.campaign_id, r.actor, r.changed_at) for r in resumes
    )
    expected = sorted(
        (local_date(at, zone), pk, "reset_daily_budgets", at)
        for (at, marker), previous in zip(markers[1:], local_dates, strict=False)
        for pk in budget_paused[previous]
    )
    assert expected, "no day ended budget-paused: the scenario proves nothing"
    assert seen == expected  # each budget-paused campaign resumed once, by the reset
    report(
        f"[seed {DST_SEED}-{zone_name}-{day}] DST change at {change:%Y-%m-%d %H:%M} UTC; "
        f"{len(keys)} spends over {len(local_dates)} local dates; counter days "
        f"{[str(d) for _, d in markers]}; {len(seen)} budget resumes"
    )
    assert_invariants(at=last_tick, accepted_keys=keys, before=ledger)
