"""Scenario 9 (reliability issue): a stream of spends from several processes across
local midnight, the reset task late. Each process records on the clock of its own
spend's instant; every spend must count in one day and the late reset erase none.
Inputs come from a seeded `random.Random`; the measured figures are printed (`pytest
-rP` shows them). The in-process cases of scenarios 9 and 10 (clocks behind midnight,
DST nights) are in tests/test_period_boundaries.py.
"""

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connections
from django.db.models import Sum

from ads import services, tasks
from ads.models import Brand, Campaign, SpendEvent
from ads.rules import day_bounds, local_date
from tests.factories import BrandFactory, CampaignFactory
from tests.invariants import assert_invariants, snapshot_ledger
from tests.reliability.processes import fork, report, run_processes


def ledger_sum(day: date, zone: ZoneInfo, **owner: int) -> Decimal:
    start, end = day_bounds(day, zone)
    spend = SpendEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end, **owner)
    return spend.aggregate(total=Sum("amount"))["total"] or Decimal(0)


# --- 9. A spend stream across local midnight, the reset task late -----------------------

MIDNIGHT_SEED = 9
LA = ZoneInfo("America/Los_Angeles")
DAY = date(2026, 11, 27)  # D; D+1 is Saturday 28 November
NEXT_DAY = DAY + timedelta(days=1)
MIDNIGHT = datetime.combine(NEXT_DAY, time(0), LA)
STREAM_PROCESSES = 4
STREAM_SPENDS = 50  # per process: 200 spends dated 23:58:00-00:01:59 local


@dataclass(frozen=True)
class Stream:
    key: str
    campaign_id: int
    amount: Decimal
    at: datetime


@dataclass(frozen=True)
class Seen:
    event_id: int
    counters_day: date | None  # the brand's counter day the spend left behind


def spend_on_own_clock(
    spends: Sequence[Stream], barrier: Barrier, outbox: "Queue[list[Seen]]"
) -> None:
    """Each spend is recorded on the clock of its own instant: processes whose clocks
    straddle midnight, as workers on different machines (or a spend waiting for the
    brand's lock with the time it read before) do."""
    try:
        barrier.wait(timeout=60)
        seen = []
        for spend in spends:
            with time_machine.travel(spend.at, tick=False):
                result = services.record_spend(
                    spend.campaign_id, spend.amount, idempotency_key=spend.key
                )
            seen.append(Seen(result.event.pk, result.brand.day))
        outbox.put(seen)
    finally:
        connections.close_all()


def stream_across_midnight(rng: random.Random, campaign_ids: Sequence[int]) -> list[Stream]:
    """Spends dated at random seconds from 23:58 to 00:02 local, in random order."""
    spends = [
        Stream(
            key=f"m{n}",
            campaign_id=rng.choice(campaign_ids),
            amount=Decimal(rng.randint(1, 999)) / 100,
            at=MIDNIGHT + timedelta(seconds=rng.randrange(-120, 120)),
        )
        for n in range(STREAM_PROCESSES * STREAM_SPENDS)
    ]
    rng.shuffle(spends)
    return spends


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_spends_across_midnight_count_in_one_day_each_and_a_late_reset_erases_none(
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    rng = random.Random(MIDNIGHT_SEED)
    brand = BrandFactory.create(
        timezone="America/Los_Angeles", daily_budget=Decimal(100000), monthly_budget=Decimal(100000)
    )
    campaign_ids = [c.pk for c in CampaignFactory.create_batch(3, brand=brand)]
    evening = datetime.combine(DAY, time(22), LA)
    services.record_spend(campaign_ids[0], "7.00", idempotency_key="evening", at=evening)
    earlier = snapshot_ledger()
    spends = stream_across_midnight(rng, campaign_ids)
    barrier = fork.Barrier(STREAM_PROCESSES)

    seen = run_processes(
        spend_on_own_clock,
        [(spends[p::STREAM_PROCESSES], barrier) for p in range(STREAM_PROCESSES)],
        fork.Queue(),
    )
    before_reset = Brand.objects.get()
    time_machine.move_to(datetime.combine(NEXT_DAY, time(0, 20), LA), tick=False)
    tasks.reset_daily_budgets()  # the first reset of the night, 20 minutes late

    expected: dict[date, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    expected[DAY][campaign_ids[0]] += Decimal("7.00")
    for spend in spends:
        expected[local_date(spend.at, LA)][spend.campaign_id] += spend.amount
    day_total, next_total = (sum(expected[d].values(), Decimal(0)) for d in (DAY, NEXT_DAY))
    sent = sum((s.amount for s in spends), Decimal("7.00"))
    occurred = dict(SpendEvent.objects.values_list("idempotency_key", "occurred_at"))
    assert {key: local_date(at, LA) for key, at in occurred.items()} == {
        "evening": DAY,
        **{s.key: local_date(s.at, LA) for s in spends},
    }  # each spend is in the ledger once, dated in the day it happened
    assert (ledger_sum(DAY, LA), ledger_sum(NEXT_DAY, LA)) == (day_total, next_total)
    assert day_total + next_total == sent
    brand = Brand.objects.get()
    assert (brand.counters_day, brand.current_daily_spend) == (NEXT_DAY, next_total)
    assert brand.current_monthly_spend == sent
    assert dict(Campaign.objects.values_list("pk", "daily_spend")) == {
        pk: expected[NEXT_DAY][pk] for pk in campaign_ids
    }  # no spend of D+1 was erased by the late reset
    days = [s.counters_day for s in sorted((s for b in seen for s in b), key=lambda s: s.event_id)]
    back = sum(1 for pair in pairwise(days) if pair == (NEXT_DAY, DAY))
    assert back == 0, f"the counters went back from D+1 to D {back} time(s)"
    report(
        f"[seed {MIDNIGHT_SEED}] {len(spends)} spends in {STREAM_PROCESSES} processes: "
        f"{Counter(local_date(s.at, LA) for s in spends)[DAY]} dated D ({day_total} with the "
        f"evening's 7.00), {Counter(local_date(s.at, LA) for s in spends)[NEXT_DAY]} dated D+1 "
        f"({next_total}); counters on {before_reset.counters_day} before the late reset; "
        f"the counters went back from D+1 to D {back} time(s) during the stream"
    )
    assert_invariants(
        at=datetime.combine(NEXT_DAY, time(0, 20), LA),
        accepted_keys=["evening", *(s.key for s in spends)],
        before=earlier,
    )
