"""Two Beats at once, and Beat down across a local midnight and a month end
(issue 8, scenario 8).

Real Beat and worker processes run on a shared virtual clock (tests/reliability/
clocked.py) set seconds before midnight of 30 November, with the reset tasks every
second instead of every 15 minutes, so many schedule periods pass in a few seconds.
Every reset run after the first finds nothing to do and logs so; the effective ones
are counted from the roll-over lines each brand and period gets exactly once.
"""

import re
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from ads.models import Brand, Campaign, CampaignStatusChange
from ads.services import record_spend
from tests.conftest import wait_until
from tests.factories import BrandFactory, CampaignFactory
from tests.invariants import assert_invariants, snapshot_ledger
from tests.reliability.processes import (
    Program,
    RedisServer,
    every_second,
    programs,
    redis_server,
    report,
    start_beat,
    start_worker,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.process,
    pytest.mark.redis,
]

BEFORE_MIDNIGHT = datetime(2026, 11, 30, 23, 59, 54, tzinfo=UTC)  # month end in UTC
NEW_YORK_1AM = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # an hour after its midnight
RUN_SECONDS = 12  # at least: many schedule periods pass on the virtual clock


def run_phase(
    prefix: str, start: datetime, redis: RedisServer, started: list[Program], zones: list[str]
) -> list[Program]:
    """Two Beats and a worker on a clock that reads `start` now, until each Beat sent the
    daily reset three times, the `zones` rolled into the new day and month, and
    RUN_SECONDS passed; then the Beats stop, and the worker once it ran what they sent."""
    offset = start.timestamp() - time_machine.escape_hatch.time.time()  # real, not travelled
    worker = start_worker(f"{prefix}-worker", broker=redis.url, offset=offset)
    beats = [start_beat(f"{prefix}-beat-{n}", broker=redis.url, offset=offset) for n in (1, 2)]
    started += [worker, *beats]
    began = time.monotonic()

    def done() -> bool:
        logs = worker.text()
        return (
            all(beat.count(r"Sending due task reset-daily-budgets") >= 3 for beat in beats)
            and all(rolled(logs, "daily", "2026-12-01", zone) for zone in zones)
            and all(rolled(logs, "monthly", "2026-12", zone) for zone in zones)
            and time.monotonic() - began >= RUN_SECONDS
        )

    # Real processes on their own clocks: there is no time to freeze, so wait for them.
    wait_until(done, f"{prefix}: the Beats' resets and the roll-overs", 120)
    for beat in beats:
        beat.stop()
    # Acknowledged late: a message leaves Redis once its task has run.
    wait_until(lambda: redis.queued() == 0, f"{prefix}: the worker running what was sent", 60)
    worker.stop()
    return [worker, *beats]


def rolled(logs: str, kind: str, period: str, zone: str) -> list[str]:
    """Brand ids in the roll-over lines of one kind, period and zone, one per roll-over."""
    lines = re.findall(
        rf"{kind} counters rolled into {period} \({zone}\) for brands \[([\d, ]+)\]", logs
    )
    return [pk.strip() for line in lines for pk in line.split(",")]


def test_two_beats_and_a_beat_outage_give_one_effective_reset_per_brand_and_period(
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    time_machine.move_to(BEFORE_MIDNIGHT, tick=True)
    every_second("ads.reset_daily_budgets", "ads.reset_monthly_budgets")
    zones = {"UTC": "UTC", "Lisbon": "Europe/Lisbon", "New York": "America/New_York"}
    brands = {
        name: BrandFactory.create(
            name=name, timezone=zone, daily_budget=Decimal(10), monthly_budget=Decimal(1000)
        )
        for name, zone in zones.items()
    }
    Brand.objects.filter(name="Lisbon").update(
        monthly_budget=Decimal(10), daily_budget=Decimal(100)
    )
    campaigns = {name: CampaignFactory.create(brand=brand) for name, brand in brands.items()}
    for name, campaign in campaigns.items():  # each paused for budget before midnight
        record_spend(campaign.pk, "10", idempotency_key=f"spend-{name}", at=timezone.now())
    assert not Campaign.objects.filter(is_active=True).exists()
    before = snapshot_ledger()

    with redis_server() as redis, programs() as started:
        first = run_phase("beats", BEFORE_MIDNIGHT, redis, started, ["UTC", "Europe/Lisbon"])
        # Beat (and the worker) down from just after 00:00 UTC to 06:00: New York's midnight
        # passes.
        time_machine.move_to(NEW_YORK_1AM, tick=True)
        second = run_phase("after-outage", NEW_YORK_1AM, redis, started, ["America/New_York"])
        logs = "".join(program.text() for program in started)

    ids = {name: str(brand.pk) for name, brand in brands.items()}
    assert rolled(logs, "daily", "2026-12-01", "UTC") == [ids["UTC"]]
    assert rolled(logs, "monthly", "2026-12", "UTC") == [ids["UTC"]]
    assert rolled(logs, "daily", "2026-12-01", "Europe/Lisbon") == [ids["Lisbon"]]
    assert rolled(logs, "monthly", "2026-12", "Europe/Lisbon") == [ids["Lisbon"]]
    assert rolled(logs, "daily", "2026-12-01", "America/New_York") == [ids["New York"]]
    assert rolled(logs, "monthly", "2026-12", "America/New_York") == [ids["New York"]]
    assert "daily counters rolled into 2026-12-02" not in logs
    beats = [p for p in [*first, *second] if "-beat-" in p.name]
    sent = {p.name: p.count(r"Sending due task reset-daily-budgets") for p in beats}
    assert all(n >= 3 for name, n in sent.items())
    no_op = len(
        re.findall(r"reset_(daily|monthly)_budgets: 0 campaign state change\(s\), 0 brand", logs)
    )
    assert no_op >= 10  # the duplicates, each harmless and logged
    resumed = CampaignStatusChange.objects.filter(new_is_active=True)
    assert sorted(resumed.values_list("campaign_id", flat=True)) == sorted(
        c.pk for c in campaigns.values()
    )
    assert set(resumed.values_list("actor", flat=True)) <= {
        "reset_daily_budgets",
        "reset_monthly_budgets",
    }
    measured = assert_invariants(
        at=timezone.now(), accepted_keys=[f"spend-{n}" for n in campaigns], before=before
    )
    report(
        f"scenario 8: Beats sent reset-daily-budgets {sent}; {no_op} duplicate reset runs "
        f"logged as no-ops; 6 roll-overs (3 brands x day and month), one each; "
        f"{resumed.count()} campaigns resumed once; {measured}"
    )
