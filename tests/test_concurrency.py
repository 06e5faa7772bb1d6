"""Concurrent writers in separate OS processes never lose or double an update (SPEC 4).

These tests commit for real (transaction=True) and fork worker processes that open
their own database connections, on SQLite and on PostgreSQL alike.
"""

import json
import multiprocessing
import urllib.request
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal
from multiprocessing.synchronize import Barrier

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import Sum
from pytest_django.live_server_helper import LiveServer

from ads import tasks
from ads.api_keys import issue_key
from ads.models import ApiKey, Brand, Campaign, CampaignStatusChange, SpendEvent
from ads.services import record_spend
from tests.conftest import NOW
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


def test_same_key_from_four_processes_at_once_records_one_event() -> None:
    campaign = CampaignFactory.create()
    barrier, outcomes = fork.Barrier(PROCESSES), fork.Queue()

    run_processes(spend_with_key, [(campaign.pk, "order-1", barrier, outcomes)] * PROCESSES)

    results = sorted(outcomes.get(timeout=5) for _ in range(PROCESSES))
    assert results == ["already recorded"] * (PROCESSES - 1) + ["recorded"]
    assert SpendEvent.objects.count() == 1
    assert Brand.objects.get().current_daily_spend == Decimal("5.00")


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


def test_eight_http_clients_of_250_spends_end_with_exact_counters(
    live_server: LiveServer,
) -> None:
    brand = BrandFactory.create(daily_budget=Decimal("100000"), monthly_budget=Decimal("100000"))
    campaign_ids = [c.pk for c in CampaignFactory.create_batch(3, brand=brand)]
    api_key = ApiKey(name="load test", all_brands=True)
    key = issue_key(api_key)
    api_key.save()
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
