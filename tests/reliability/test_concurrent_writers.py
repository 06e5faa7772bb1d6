"""Concurrent writers in separate OS processes (reliability issue, scenarios 1-4).

Every scenario forks real processes that open their own database connections and
commit for real, draws its inputs from a seeded `random.Random`, and ends with the
ledger invariants. The figures each one measures are printed (`pytest -rP` shows them).
"""

import json
import logging
import random
import re
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from io import StringIO
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from time import monotonic, sleep
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, connections
from django.db.models import Sum
from pytest_django.live_server_helper import LiveServer

from ads import services, tasks
from ads.models import (
    Brand,
    Campaign,
    CampaignStatusChange,
    Schedule,
    ScheduleWindow,
    SpendEvent,
)
from ads.rules import EVERY_DAY, PauseReason
from tests.conftest import NOW, make_api_key
from tests.factories import BrandFactory, CampaignFactory
from tests.invariants import assert_invariants, snapshot_ledger
from tests.reliability.processes import fork, report, run_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]

POSTGRESQL_ONLY = "PostgreSQL scenario: runs in the PostgreSQL pass (DATABASE_URL=postgres://...)"
SQLITE_ONLY = "SQLite scenario: 'database is locked' is SQLite's answer to contention"


def money(rng: random.Random) -> Decimal:
    """A random 2-decimal amount from 0.01 to 9.99."""
    return Decimal(rng.randint(1, 999)) / 100


# --- 1. Exact sums from 8 processes, and the lost-update canary (PostgreSQL) ----------

EXACT_SEED = 20261127
WRITERS = 8
# The canary sleeps 0-50 ms (25 ms on average) before each of the ~3 writes of a spend,
# inside the transaction that holds the brand's lock, so the spends of one brand take
# ~75 ms each, one after the other: 8 × 30 = 240 spends ≈ 18 s of sleeping, ~25 s in all
# (8 × 40 measured 32.6 s on a loaded 2-CPU machine; 30 leaves room in the file's 90 s).
CANARY_SPENDS = 30


class WriteDelay:
    """Test-only lost-update canary: an execute wrapper (Django's documented hook) that
    sleeps a seeded random 0-50 ms before every UPDATE or INSERT, that is between any
    read of the spend path and its write. A read-modify-write in Python would lose
    updates under it; atomic SQL updates under the brand's row lock cannot."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.statements = 0
        self.slept = 0.0

    def __call__(
        self,
        execute: Callable[[str, Any, bool, dict[str, Any]], Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        if sql.lstrip()[:6].upper() in ("UPDATE", "INSERT"):
            pause = self.rng.uniform(0, 0.05)
            sleep(pause)
            self.statements += 1
            self.slept += pause
        return execute(sql, params, many, context)


@dataclass(frozen=True)
class WriterReport:
    worker: int
    recorded: int
    delayed_statements: int
    slept: float


PlannedSpend = tuple[int, Decimal, str]  # campaign id, amount, idempotency key


def write_plan(
    plan: Sequence[PlannedSpend],
    worker: int,
    canary_seed: int | None,
    outbox: "Queue[WriterReport]",
) -> None:
    try:
        delay = WriteDelay(canary_seed) if canary_seed is not None else None
        with connection.execute_wrapper(delay) if delay else nullcontext():
            for campaign_id, amount, key in plan:
                services.record_spend(campaign_id, amount, idempotency_key=key, at=NOW)
        outbox.put(
            WriterReport(
                worker=worker,
                recorded=len(plan),
                delayed_statements=delay.statements if delay else 0,
                slept=delay.slept if delay else 0.0,
            )
        )
    finally:
        connections.close_all()


@pytest.mark.parametrize(
    ("spends_per_writer", "canary"),
    [pytest.param(500, False, id="8x500"), pytest.param(CANARY_SPENDS, True, id="canary-8x30")],
)
def test_eight_processes_of_spends_end_with_exact_sums(
    spends_per_writer: int, canary: bool
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(POSTGRESQL_ONLY)
    rng = random.Random(EXACT_SEED + canary)
    brand = BrandFactory.create(
        daily_budget=Decimal("1000000"), monthly_budget=Decimal("1000000")
    )  # 4,000 spends of at most 9.99 never reach it
    campaign_ids = [c.pk for c in CampaignFactory.create_batch(3, brand=brand)]
    plans = [
        [(rng.choice(campaign_ids), money(rng), f"w{worker}-{n}") for n in range(spends_per_writer)]
        for worker in range(WRITERS)
    ]
    expected: dict[int, Decimal] = defaultdict(Decimal)
    for campaign_id, amount, _ in (spend for plan in plans for spend in plan):
        expected[campaign_id] += amount
    total = sum(expected.values(), Decimal(0))
    started = monotonic()

    reports = run_processes(
        write_plan,
        [(plan, w, EXACT_SEED + 100 + w if canary else None) for w, plan in enumerate(plans)],
        fork.Queue(),
    )

    elapsed = monotonic() - started
    brand = Brand.objects.get()
    assert sum(r.recorded for r in reports) == WRITERS * spends_per_writer
    assert SpendEvent.objects.count() == WRITERS * spends_per_writer
    assert SpendEvent.objects.aggregate(total=Sum("amount"))["total"] == total
    assert (brand.current_daily_spend, brand.current_monthly_spend) == (total, total)
    assert dict(Campaign.objects.values_list("pk", "daily_spend")) == expected
    if canary:  # the hook must have widened the windows, or this proves nothing
        assert all(r.delayed_statements > 0 for r in reports), reports
    report(
        f"[seed {EXACT_SEED + canary}] {WRITERS}×{spends_per_writer} spends, total {total}, "
        f"{elapsed:.1f} s; canary: {sum(r.delayed_statements for r in reports)} writes "
        f"delayed, {sum(r.slept for r in reports):.1f} s slept"
    )
    assert_invariants(at=NOW, accepted_keys=[key for plan in plans for _, _, key in plan])


# --- 2. SQLite: every spend commits or fails with a retryable error -------------------

LOCKED_SEED = 4250
LOCKED_PROCESSES = 4
LOCKED_SPENDS = 250


@dataclass(frozen=True)
class Outcome:
    key: str
    amount: Decimal
    result: str  # "recorded", "retryable: ..." or "error: ..."


def spend_or_report_locked(
    plan: Sequence[PlannedSpend], busy_timeout: float | None, outbox: "Queue[list[Outcome]]"
) -> None:
    try:
        if busy_timeout is not None:  # read when the child opens its own connection
            connection.settings_dict["OPTIONS"]["timeout"] = busy_timeout
        outcomes = []
        for campaign_id, amount, key in plan:
            try:
                services.record_spend(campaign_id, amount, idempotency_key=key, at=NOW)
            except OperationalError as error:
                outcomes.append(Outcome(key, amount, f"retryable: {error}"))
            except Exception as error:  # anything else is a finding, reported as such
                outcomes.append(Outcome(key, amount, f"error: {type(error).__name__}: {error}"))
            else:
                outcomes.append(Outcome(key, amount, "recorded"))
        outbox.put(outcomes)
    finally:
        connections.close_all()


@pytest.mark.parametrize(
    "busy_timeout",
    [pytest.param(None, id="settings-timeout-20s"), pytest.param(0.01, id="busy-timeout-10ms")],
)
def test_sqlite_spends_commit_or_fail_retryably_and_none_is_lost(
    busy_timeout: float | None,
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip(SQLITE_ONLY)
    rng = random.Random(LOCKED_SEED)
    brand = BrandFactory.create(daily_budget=Decimal("100000"), monthly_budget=Decimal("100000"))
    campaign_ids = [c.pk for c in CampaignFactory.create_batch(3, brand=brand)]
    plans = [
        [(rng.choice(campaign_ids), money(rng), f"p{p}-{n}") for n in range(LOCKED_SPENDS)]
        for p in range(LOCKED_PROCESSES)
    ]

    batches = run_processes(
        spend_or_report_locked, [(plan, busy_timeout) for plan in plans], fork.Queue()
    )

    outcomes = [outcome for batch in batches for outcome in batch]
    recorded = [o for o in outcomes if o.result == "recorded"]
    retryable = [o for o in outcomes if o.result.startswith("retryable: ")]
    other = [o.result for o in outcomes if o not in recorded and o not in retryable]
    assert not other, f"neither recorded nor retryable: {other[:5]}"
    assert all("database is locked" in o.result for o in retryable), retryable[:5]
    assert len(recorded) + len(retryable) == LOCKED_PROCESSES * LOCKED_SPENDS
    if busy_timeout is not None:  # the short timeout is there to exercise the error path
        assert retryable, "no writer ever met the lock: the error path was not exercised"
    total = sum((o.amount for o in recorded), Decimal(0))
    report(
        f"[seed {LOCKED_SEED}, busy timeout {busy_timeout or 'from settings'}] "
        f"{len(recorded)} recorded + {len(retryable)} retryable = {len(outcomes)}; "
        f"recorded total {total}"
    )
    assert Brand.objects.get().current_daily_spend == total
    assert_invariants(at=NOW, accepted_keys=[o.key for o in recorded])


# --- 3. One key, four paths at once ------------------------------------------------------

RACE_SEED = 3
PATHS = ("command", "task", "batch", "api")


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def post_spend(url: str, api_key: str, campaign_id: int, amount: str, key: str) -> tuple[int, Any]:
    body = {"campaign_id": campaign_id, "amount": amount, "idempotency_key": key}
    request = urllib.request.Request(
        f"{url}/api/v1/spend",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def send_through(path: str, campaign_id: int, amount: str, key: str, url: str, api_key: str) -> str:
    """Send one spend through one interface; say "recorded" or "already_recorded"."""
    if path == "command":
        out = StringIO()
        call_command("simulate_spend", str(campaign_id), amount, "--key", key, stdout=out)
        said = {"Recorded spend #": "recorded", "Already recorded as spend #": "already_recorded"}
        text = out.getvalue()
        return next((said[start] for start in said if text.startswith(start)), text[:200])
    if path == "task":
        handler, logger = Messages(), logging.getLogger("ads.tasks")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            tasks.record_spend(campaign_id, amount, idempotency_key=key)
        finally:
            logger.removeHandler(handler)
        said = {
            f"INFO record_spend: key {key} recorded": "recorded",
            f"INFO record_spend: key {key} was already recorded": "already_recorded",
        }
        return next((said[line] for line in handler.lines if line in said), str(handler.lines))
    if path == "batch":
        batch = services.record_spend_batch([services.SpendInput(campaign_id, amount, None, key)])
        return batch.outcomes[0]
    status, body = post_spend(url, api_key, campaign_id, amount, key)
    return str(body["results"][0]["status"]) if status == 200 else f"HTTP {status}: {body}"


def race_one_key(
    path: str,
    campaign_id: int,
    amount: str,
    key: str,
    url: str,
    api_key: str,
    barrier: Barrier,
    outbox: "Queue[tuple[str, str]]",
) -> None:
    try:
        barrier.wait(timeout=60)
        try:
            outcome = send_through(path, campaign_id, amount, key, url, api_key)
        except Exception as error:
            outcome = f"error: {type(error).__name__}: {error}"
        outbox.put((path, outcome))
    finally:
        connections.close_all()


def state() -> tuple[object, ...]:
    return (
        list(Brand.objects.values_list("current_daily_spend", "current_monthly_spend")),
        list(Campaign.objects.order_by("pk").values_list("daily_spend", "is_active")),
        CampaignStatusChange.objects.count(),
    )


@pytest.mark.parametrize("senders", [2, 5, 10])
def test_one_key_sent_through_four_paths_at_once_is_recorded_once(
    senders: int,
    live_server: LiveServer,
    time_machine: time_machine.TimeMachineFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    time_machine.move_to(NOW, tick=False)  # children and the live server share the clock
    rng = random.Random(RACE_SEED * 100 + senders)
    campaign = CampaignFactory.create(brand__daily_budget=Decimal(1000))
    other = CampaignFactory.create(brand=campaign.brand)
    secret = make_api_key(name="race")
    amount, key = str(money(rng)), f"race-{senders}-{rng.getrandbits(32):08x}"
    paths = [PATHS[n % len(PATHS)] for n in range(senders)]
    barrier = fork.Barrier(senders)

    outcomes = run_processes(
        race_one_key,
        [(p, campaign.pk, amount, key, live_server.url, secret, barrier) for p in paths],
        fork.Queue(),
    )

    assert sorted(o for _, o in outcomes) == ["already_recorded"] * (senders - 1) + ["recorded"]
    event = SpendEvent.objects.get()
    assert (event.idempotency_key, event.amount) == (key, Decimal(amount))
    brand = Brand.objects.get()
    assert (brand.current_daily_spend, brand.current_monthly_spend) == (event.amount,) * 2
    assert Campaign.objects.get(pk=campaign.pk).daily_spend == event.amount
    winner = next(path for path, o in outcomes if o == "recorded")
    report(
        f"[seed {RACE_SEED * 100 + senders}] {senders} senders {dict(Counter(paths))}: "
        f"1 row (amount {amount}, won by {winner}, source {event.source})"
    )

    ledger, before = snapshot_ledger(), state()
    another = str(Decimal(amount) + Decimal("0.01"))
    conflict = f"idempotency_key: '{key}' was already used for a different spend"
    cli_conflict = conflict.replace("idempotency_key:", "--key:")  # the option's name
    with pytest.raises(CommandError, match="^" + re.escape(cli_conflict)):
        call_command("simulate_spend", str(campaign.pk), another, "--key", key, stdout=StringIO())
    status, body = post_spend(live_server.url, secret, campaign.pk, another, key)
    assert status == 409
    assert body["detail"][0].startswith(f"index 0: {conflict}")
    with caplog.at_level(logging.INFO, logger="ads.tasks"):
        tasks.record_spend(campaign.pk, another, idempotency_key=key)  # returns: not retried
    logged = f"record_spend rejected, not retried: {conflict}"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [message[: len(logged)] for message in errors] == [logged]
    for campaign_id, spend in (campaign.pk, another), (other.pk, amount):
        with pytest.raises(ValidationError, match=re.escape(conflict)):
            services.record_spend_batch([services.SpendInput(campaign_id, spend, None, key)])
    assert state() == before
    assert_invariants(at=NOW, accepted_keys=[key], before=ledger)


# --- 4. The budget race ----------------------------------------------------------------

BUDGET_SEED = 4
BUDGET_ZONE = ZoneInfo("Europe/Paris")
# Friday 27 November 2026 on the brand's wall clock: the race runs inside the 10:00-12:15
# window, which closes at 12:15; the next window opens at 12:30.
RACE_AT = datetime(2026, 11, 27, 12, 5, tzinfo=BUDGET_ZONE)
BUDGET_PROCESSES = 8
BUDGET_SPENDS = 20


def spend_ones(
    plan: Sequence[tuple[int, str]], barrier: Barrier, outbox: "Queue[list[tuple[str, Decimal]]]"
) -> None:
    """Spend 1.00 per planned (campaign, key); report each spend that changed a state,
    with the brand's daily spend it saw."""
    try:
        barrier.wait(timeout=60)
        changed = []
        for campaign_id, key in plan:
            result = services.record_spend(campaign_id, "1.00", idempotency_key=key)
            if result.changes:
                changed.append((key, result.brand.daily_spend))
        outbox.put(changed)
    finally:
        connections.close_all()


def test_budget_race_pauses_each_campaign_once_and_an_opening_window_keeps_them_paused(
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    rng = random.Random(BUDGET_SEED)
    time_machine.move_to(RACE_AT, tick=False)  # the children inherit the frozen clock
    brand = BrandFactory.create(
        timezone="Europe/Paris", daily_budget=Decimal("100.00"), monthly_budget=Decimal(100000)
    )
    schedule = Schedule.objects.create(name="Late morning and lunch")
    for start, end in (time(10), time(12, 15)), (time(12, 30), time(14)):
        ScheduleWindow.objects.create(schedule=schedule, weekdays=EVERY_DAY, start=start, end=end)
    campaign_ids = [c.pk for c in CampaignFactory.create_batch(3, brand=brand, schedule=schedule)]
    tasks.enforce_dayparting()  # all three running before the race
    assert Campaign.objects.filter(is_active=True).count() == 3
    setup_changes = list(CampaignStatusChange.objects.values_list("pk", flat=True))
    plans = [
        [(rng.choice(campaign_ids), f"b{p}-{n}") for n in range(BUDGET_SPENDS)]
        for p in range(BUDGET_PROCESSES)
    ]
    barrier = fork.Barrier(BUDGET_PROCESSES)

    reports = run_processes(spend_ones, [(plan, barrier) for plan in plans], fork.Queue())

    race = CampaignStatusChange.objects.exclude(pk__in=setup_changes)
    assert SpendEvent.objects.count() == BUDGET_PROCESSES * BUDGET_SPENDS
    assert Brand.objects.get().current_daily_spend == Decimal("160.00")
    changing = [spend for spends in reports for spend in spends]
    assert [daily for _, daily in changing] == [Decimal("100.00")]  # the 100th spend only
    pauses = race.values_list(
        "campaign_id", "old_is_active", "new_is_active", "new_pause_reasons", "actor"
    )
    assert sorted(pauses) == [
        (pk, True, False, (PauseReason.BRAND_DAILY_BUDGET,), "spend") for pk in campaign_ids
    ]

    time_machine.move_to(RACE_AT.replace(minute=15), tick=False)  # the window closes
    tasks.enforce_dayparting()
    assert set(Campaign.objects.values_list("pause_reasons", flat=True)) == {
        (PauseReason.BRAND_DAILY_BUDGET, PauseReason.OUTSIDE_SCHEDULE)
    }
    time_machine.move_to(RACE_AT.replace(minute=30), tick=False)  # the next one opens
    tasks.enforce_dayparting()

    assert not race.filter(new_is_active=True).exists()
    reasons = set(Campaign.objects.values_list("is_active", "pause_reasons"))
    assert reasons == {(False, (PauseReason.BRAND_DAILY_BUDGET,))}
    report(
        f"[seed {BUDGET_SEED}] {BUDGET_PROCESSES}×{BUDGET_SPENDS} spends of 1.00: 160.00 "
        f"recorded, {race.filter(actor='spend').count()} pause rows, "
        f"{race.count()} status rows in all, 0 resumes"
    )
    assert_invariants(
        at=RACE_AT.replace(minute=30),
        accepted_keys=[key for plan in plans for _, key in plan],
    )
