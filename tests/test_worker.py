"""Tasks through a real Redis broker and a real Celery worker (SPEC 8).

The worker runs in this process (celery.contrib.testing), consuming from the Redis
database the tests use (CELERY_BROKER_URL in pytest.ini), against the committed test
database. Waiting polls the database until the worker is done, with a bound.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun, task_retry
from celery.worker import WorkController, state
from django.db import connections
from django.utils import timezone
from pytest_django import Settings

from ad_budget_project.celery import app
from ads import services, tasks
from ads.models import Brand, Campaign, CampaignStatusChange, PendingSpend, SpendEvent
from tests.conftest import wait_until
from tests.factories import CampaignFactory

# A real worker (in this process) consuming from a real Redis.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.redis]


def close_worker_connections(**_: object) -> None:
    connections.close_all()  # the worker's threads keep none open past a task


@contextmanager
def running_worker(concurrency: int = 2) -> Iterator[WorkController]:
    task_postrun.connect(close_worker_connections, weak=False)
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=concurrency,
            perform_ping_check=False,
            loglevel="WARNING",
        ) as running:
            yield running
    finally:
        task_postrun.disconnect(close_worker_connections)


@pytest.fixture
def worker(redis_broker: str) -> Iterator[WorkController]:
    app.control.purge()
    with running_worker() as running:
        yield running


def queue_length() -> int:
    return int(redis.Redis.from_url(app.conf.broker_url).llen("celery"))


def worker_idle() -> bool:
    return queue_length() == 0 and not state.active_requests and not state.reserved_requests


def test_queued_spends_are_recorded_exactly_once(worker: WorkController) -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal(100))
    for n in range(40):
        tasks.record_spend.delay(campaign.pk, "0.25", idempotency_key=f"feed-{n}")
    for n in range(0, 40, 4):  # a producer retrying some of them
        tasks.record_spend.delay(campaign.pk, "0.25", idempotency_key=f"feed-{n}")

    wait_until(
        lambda: SpendEvent.objects.count() >= 40 and worker_idle(), "the worker recording 40 spends"
    )

    assert SpendEvent.objects.count() == 40
    assert set(SpendEvent.objects.values_list("source", flat=True)) == {"task"}
    assert Brand.objects.get().current_daily_spend == Decimal("10.00")
    assert Campaign.objects.get().daily_spend == Decimal("10.00")


def test_bad_queued_spend_is_dropped_not_retried(worker: WorkController) -> None:
    retried: list[object] = []

    def note_retry(request: object = None, **_: object) -> None:
        retried.append(request)

    task_retry.connect(note_retry, weak=False)
    try:
        campaign = CampaignFactory.create()
        tasks.record_spend.delay(campaign.pk, "-4", idempotency_key="bad-1")
        tasks.record_spend.delay(campaign.pk, "4", idempotency_key="good-1")

        wait_until(
            lambda: SpendEvent.objects.exists() and worker_idle(), "the worker settling the queue"
        )
    finally:
        task_retry.disconnect(note_retry)

    assert list(SpendEvent.objects.values_list("idempotency_key", flat=True)) == ["good-1"]
    assert retried == []


def test_enforcement_task_runs_through_the_broker(worker: WorkController) -> None:
    campaign = CampaignFactory.create(evaluated_at=timezone.now())
    Brand.objects.update(daily_budget=Decimal(0))  # lowered behind the services' back

    tasks.enforce_budget_limits.delay()

    wait_until(
        lambda: not Campaign.objects.get(pk=campaign.pk).is_active,
        "the worker pausing the campaign",
    )
    assert CampaignStatusChange.objects.latest("pk").actor == "enforce_budget_limits"


def test_reset_task_runs_through_the_broker(worker: WorkController) -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal(5), evaluated_at=timezone.now())
    yesterday = timezone.now().date() - timedelta(days=1)
    Brand.objects.update(counters_day=yesterday, current_daily_spend=Decimal(5))
    Campaign.objects.update(daily_spend=Decimal(5))

    tasks.reset_daily_budgets.delay()

    wait_until(
        lambda: Brand.objects.get().counters_day != yesterday, "the worker resetting the day"
    )
    assert Brand.objects.get().current_daily_spend == Decimal(0)
    assert Campaign.objects.get(pk=campaign.pk).daily_spend == Decimal(0)


def test_a_queued_spend_lost_on_the_way_is_sent_again_and_recorded_once(
    redis_broker: str, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The outbox: spends whose messages were lost (here: purged from Redis, as a Redis
    restart without persistence or a worker killed mid-hand-over would) are sent again
    by `requeue_spends`; one still queued is sent twice and recorded once."""
    settings.SPEND_REQUEUE_AFTER = 0  # due at once; the default waits out redelivery
    campaign = CampaignFactory.create()
    app.control.purge()
    for n in range(3):
        tasks.enqueue_spend(campaign.pk, "1.25", idempotency_key=f"lost-{n}")
    assert app.control.purge() == 3  # all three messages gone
    tasks.enqueue_spend(campaign.pk, "2.00", idempotency_key="still-queued")

    with caplog.at_level(logging.INFO, logger="ads.tasks"):
        tasks.requeue_spends()
        with running_worker():
            wait_until(
                lambda: not PendingSpend.objects.exists() and worker_idle(),
                "the worker recording all",
            )
        tasks.requeue_spends()

    assert "4 sent again, 0 already recorded and cleared" in caplog.text
    assert "0 sent again" not in caplog.text  # the second run had nothing to do: no line
    assert SpendEvent.objects.count() == 4
    assert Brand.objects.get().current_daily_spend == Decimal("5.75")


def test_a_queued_spend_sent_again_keeps_its_currency(
    redis_broker: str, settings: Settings
) -> None:
    """The currency a spend was queued in travels with it through the broker, also when
    the outbox sends it again: queued in euros, it is refused by a brand that meanwhile
    pays in yen (it has no spend yet, so it may change), never counted as yen."""
    settings.SPEND_REQUEUE_AFTER = 0  # due at once
    yen = CampaignFactory.create(brand__daily_budget=Decimal(1000))
    euros = CampaignFactory.create()
    app.control.purge()
    tasks.enqueue_spend(yen.pk, "12.50", idempotency_key="lost-eur", currency="EUR")
    assert app.control.purge() == 1  # its message is lost
    tasks.enqueue_spend(euros.pk, "12.50", idempotency_key="kept-eur", currency="eur")
    brand = Brand.objects.get(pk=yen.brand_id)
    brand.currency = "JPY"
    services.save_brand(brand, changed_fields=["currency"], actor="alice", at=timezone.now())

    tasks.requeue_spends()
    with running_worker():
        wait_until(
            lambda: not PendingSpend.objects.exists() and worker_idle(),
            "the worker settling both spends",
        )

    assert list(SpendEvent.objects.values_list("idempotency_key", "brand_id")) == [
        ("kept-eur", euros.brand_id)
    ]
    assert Brand.objects.get(pk=yen.brand_id).current_daily_spend == 0
