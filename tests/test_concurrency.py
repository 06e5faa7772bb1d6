"""Concurrent writers in separate OS processes never lose or double an update (SPEC 4).

These tests commit for real (transaction=True) and fork worker processes that open
their own database connections, on SQLite and on PostgreSQL alike.
"""

import json
import multiprocessing
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.db.models import Sum
from django.test import Client
from pytest_django.live_server_helper import LiveServer

from ads import tasks
from ads.models import Brand, Campaign, CampaignStatusChange, SpendEvent
from ads.services import SpendInput, record_spend, record_spend_batch
from ads.validation import SpendConflict, describe
from tests.conftest import NOW, lock_waiters, make_api_key, wait_until
from tests.factories import BrandFactory, CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)

PROCESSES = 4
SPENDS_PER_PROCESS = 250
fork = multiprocessing.get_context("fork")


def amount_for(worker: int, n: int) -> Decimal:
    return Decimal("0.01") * (1 + (worker * SPENDS_PER_PROCESS + n) % 97)


def spend_many(campaign_ids: Sequence[int], worker: int) -> None:
    try:
        for n in range(SPENDS_PER_PROCESS):
            record_spend(
                campaign_ids[n % len(campaign_ids)],
                amount_for(worker, n),
                idempotency_key=f"worker{worker}-{n}",
                at=NOW,
            )
    finally:
        connections.close_all()


def run_processes(target: Callable[..., None], args: Sequence[tuple[object, ...]]) -> None:
    connections.close_all()  # children must open their own connections
    processes = [fork.Process(target=target, args=a) for a in args]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0] * len(processes)


@pytest.mark.process
def test_four_processes_of_250_spends_end_with_exact_counters() -> None:
    brand = BrandFactory.create(daily_budget=Decimal("100000"), monthly_budget=Decimal("100000"))
    campaign_ids = [c.pk for c in CampaignFactory.create_batch(3, brand=brand)]
    expected = sum(
        (amount_for(w, n) for w in range(PROCESSES) for n in range(SPENDS_PER_PROCESS)),
        Decimal(0),
    )

    run_processes(spend_many, [(campaign_ids, worker) for worker in range(PROCESSES)])

    brand = Brand.objects.get()
    ledger = SpendEvent.objects.aggregate(total=Sum("amount"))["total"]
    campaigns = Campaign.objects.aggregate(total=Sum("daily_spend"))["total"]
    assert SpendEvent.objects.count() == PROCESSES * SPENDS_PER_PROCESS
    assert brand.current_daily_spend == brand.current_monthly_spend == expected
    assert ledger == campaigns == expected


def spend_with_key(
    campaign_id: int, key: str, barrier: Barrier, outcomes: "multiprocessing.Queue[str]"
) -> None:
    try:
        barrier.wait(timeout=60)
        result = record_spend(campaign_id, "5.00", idempotency_key=key, at=NOW)
        outcomes.put("recorded" if result.created else "already recorded")
    except ValidationError as error:
        outcomes.put(f"rejected: {error.message_dict}")
    finally:
        connections.close_all()


@pytest.mark.process
def test_same_key_from_four_processes_at_once_records_one_event() -> None:
    campaign = CampaignFactory.create()
    barrier, outcomes = fork.Barrier(PROCESSES), fork.Queue()

    run_processes(spend_with_key, [(campaign.pk, "order-1", barrier, outcomes)] * PROCESSES)

    results = sorted(outcomes.get(timeout=5) for _ in range(PROCESSES))
    assert results == ["already recorded"] * (PROCESSES - 1) + ["recorded"]
    assert SpendEvent.objects.count() == 1
    assert Brand.objects.get().current_daily_spend == Decimal("5.00")


@pytest.mark.process
def test_same_key_on_two_brands_at_once_records_one_and_rejects_the_other() -> None:
    # Different brands take different locks, so the unique index decides.
    first, second = CampaignFactory.create(), CampaignFactory.create()
    barrier, outcomes = fork.Barrier(2), fork.Queue()

    run_processes(
        spend_with_key,
        [(first.pk, "order-1", barrier, outcomes), (second.pk, "order-1", barrier, outcomes)],
    )

    results = sorted(outcomes.get(timeout=5) for _ in range(2))
    assert results[0] == "recorded"
    assert results[1].startswith("rejected: {'idempotency_key': [")
    assert SpendEvent.objects.count() == 1
    assert sorted(Brand.objects.values_list("current_daily_spend", flat=True)) == [
        Decimal(0),
        Decimal("5.00"),
    ]


def run_task_at(task_name: str, barrier: Barrier) -> None:
    try:
        barrier.wait(timeout=60)
        getattr(tasks, task_name)()
    finally:
        connections.close_all()


@pytest.mark.process
@pytest.mark.parametrize(
    ("task_name", "actor"),
    [("reset_daily_budgets", "reset_daily_budgets"), ("enforce_budget_limits", None)],
)
def test_a_task_delivered_four_times_at_once_acts_once(
    task_name: str, actor: str | None, time_machine: time_machine.TimeMachineFixture
) -> None:
    brand = BrandFactory.create(daily_budget=Decimal(10), timezone="Asia/Tokyo")
    campaigns = CampaignFactory.create_batch(3, brand=brand)
    record_spend(campaigns[0].pk, "10", at=NOW)  # all three paused for the day
    if actor is None:  # enforcement: switch the brand off behind the services' back
        actor = task_name
        Brand.objects.update(is_active=False)
    time_machine.move_to(NOW + timedelta(days=1), tick=False)  # children inherit the clock
    barrier = fork.Barrier(PROCESSES)

    run_processes(run_task_at, [(task_name, barrier)] * PROCESSES)

    changes = CampaignStatusChange.objects.filter(actor=actor)
    assert changes.count() == 3
    assert sorted(changes.values_list("campaign_id", flat=True)) == [c.pk for c in campaigns]
    assert Brand.objects.get().current_monthly_spend == Decimal(10)


def post_spends(url: str, key: str, campaign_ids: Sequence[int], worker: int) -> None:
    """One HTTP client process: 250 single spends, each in its own request."""
    for n in range(SPENDS_PER_PROCESS):
        body = json.dumps({
            "campaign_id": campaign_ids[n % len(campaign_ids)],
            "amount": str(amount_for(worker, n)),
            "idempotency_key": f"http-{worker}-{n}",
        }).encode()  # fmt: skip
        request = urllib.request.Request(
            f"{url}/api/v1/spend",
            data=body,
            headers={"Content-Type": "application/json", "X-API-Key": key},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200


@pytest.mark.process
def test_eight_http_clients_of_250_spends_end_with_exact_counters(
    live_server: LiveServer,
) -> None:
    brand = BrandFactory.create(daily_budget=Decimal("100000"), monthly_budget=Decimal("100000"))
    campaign_ids = [c.pk for c in CampaignFactory.create_batch(3, brand=brand)]
    key = make_api_key(name="load test")
    clients = 8
    expected = sum(
        (amount_for(w, n) for w in range(clients) for n in range(SPENDS_PER_PROCESS)), Decimal(0)
    )

    run_processes(post_spends, [(live_server.url, key, campaign_ids, w) for w in range(clients)])

    brand = Brand.objects.get()
    assert SpendEvent.objects.count() == clients * SPENDS_PER_PROCESS
    assert SpendEvent.objects.aggregate(total=Sum("amount"))["total"] == expected
    assert brand.current_daily_spend == brand.current_monthly_spend == expected
    assert Campaign.objects.aggregate(total=Sum("daily_spend"))["total"] == expected


# --- One idempotency key, two brands, at once ------------------------------------------
# Brand locks serialise one brand's writers only; across brands the unique index decides.
# The holder records the key for one brand and keeps its transaction open until the
# racer, spending for another brand, waits on it; then it commits. PostgreSQL shows the
# wait, so the racer's insert is certain to meet the holder's uncommitted row there; on
# SQLite the racer waits for the write lock whenever it starts, and sees the row.

KEY = "order-1"


def while_key_is_held(holder_campaign: int, racer: Callable[[], str]) -> str:
    held, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                record_spend(holder_campaign, "5.00", idempotency_key=KEY, at=NOW)
                held.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def race() -> None:
        try:
            outcome.append(racer())
        except Exception as error:  # the outcome under test: a crash is one
            outcome.append(f"raised {type(error).__name__}: {error}")
        finally:
            connection.close()

    holder, racing = threading.Thread(target=hold), threading.Thread(target=race)
    holder.start()
    assert held.wait(timeout=60)
    racing.start()
    if connection.vendor == "postgresql":
        wait_until(lambda: lock_waiters() >= 1, "the racer waiting on the holder's key", 30)
    release.set()
    holder.join(timeout=60)
    racing.join(timeout=60)
    return outcome[0]


def conflict(holder: int) -> str:
    return (
        f"'{KEY}' was already used for a different spend (campaign {holder}, amount €5.00); "
        "use a new key for a new spend"
    )


def race_batch_service(campaign_id: int, caplog: pytest.LogCaptureFixture) -> str:
    try:
        record_spend_batch([SpendInput(campaign_id, "5.00", None, KEY)], at=NOW)
    except SpendConflict as error:
        return f"conflict: {describe(error)}"
    return "recorded"


def race_single_service(campaign_id: int, caplog: pytest.LogCaptureFixture) -> str:
    try:
        record_spend(campaign_id, "5.00", idempotency_key=KEY, at=NOW)
    except SpendConflict as error:
        return f"conflict: {describe(error)}"
    return "recorded"


def race_api(campaign_id: int, caplog: pytest.LogCaptureFixture) -> str:
    key = make_api_key()
    body = {"events": [{"campaign_id": campaign_id, "amount": "5.00", "idempotency_key": KEY}]}
    response = Client().post(
        "/api/v1/spend", body, content_type="application/json", headers={"X-API-Key": key}
    )
    return f"{response.status_code} {' '.join(response.json()['detail'])}"


def race_csv_file(campaign_id: int, caplog: pytest.LogCaptureFixture) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spend.csv"
        path.write_text(f"campaign_id,amount,idempotency_key\n{campaign_id},5.00,{KEY}\n")
        try:
            call_command("simulate_spend", "--file", str(path), stdout=StringIO())
        except CommandError as error:
            return str(error).replace(str(path), "spend.csv")
    return "recorded"


def race_batch_task(campaign_id: int, caplog: pytest.LogCaptureFixture) -> str:
    tasks.record_spend_batch(
        [{"campaign_id": campaign_id, "amount": "5.00", "idempotency_key": KEY}]
    )
    return [r.getMessage() for r in caplog.records if r.name == "ads.tasks"][-1]


@pytest.mark.parametrize(
    ("racer", "expected"),
    [
        pytest.param(
            race_batch_service,
            "conflict: events: row 1: idempotency_key: {c}",
            id="batch",
        ),
        pytest.param(race_single_service, "conflict: idempotency_key: {c}", id="single"),
        pytest.param(race_api, "409 index 0: idempotency_key: {c}", id="api"),
        pytest.param(
            race_csv_file,
            "spend.csv: nothing was recorded, because of these lines:\n"
            "  line 2: idempotency_key: {c}",
            id="csv",
        ),
        pytest.param(
            race_batch_task,
            "record_spend_batch rejected, not retried: events: row 1: idempotency_key: {c}",
            id="task",
        ),
    ],
)
def test_same_key_for_two_brands_at_once_is_the_same_conflict_on_every_path(
    racer: Callable[[int, pytest.LogCaptureFixture], str],
    expected: str,
    caplog: pytest.LogCaptureFixture,
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    time_machine.move_to(NOW, tick=False)
    holder, other = CampaignFactory.create(), CampaignFactory.create()

    outcome = while_key_is_held(holder.pk, lambda: racer(other.pk, caplog))

    assert outcome == expected.format(c=conflict(holder.pk))
    assert list(SpendEvent.objects.values_list("campaign_id", flat=True)) == [holder.pk]
    assert Brand.objects.get(pk=other.brand_id).current_daily_spend == 0
