"""Webhook deliveries through a real Redis broker and a real Celery worker (in this
process, as in test_worker.py) to real receivers on loopback: handed over after the
commit, sent again by the dispatcher when the message was lost, and one receiver that
never answers delays another by at most one WEBHOOK_TIMEOUT (measured)."""

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import transaction
from pytest_django import Settings

from ad_budget_project.celery import app
from ads import tasks
from ads.models import Campaign, DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint
from ads.services import record_spend
from tests.conftest import wait_until
from tests.factories import CampaignFactory, WebhookEndpointFactory
from tests.receiver import HANG, Receiver, serve
from tests.test_worker import queue_length, running_worker

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.process,
    pytest.mark.redis,
    pytest.mark.usefixtures("loopback_webhooks"),
]


@pytest.fixture
def broker(redis_broker: str) -> str:
    app.control.purge()
    return redis_broker


@pytest.fixture
def healthy() -> Iterator[Receiver]:
    yield from serve(Receiver())


@pytest.fixture
def hanging() -> Iterator[Receiver]:
    """A receiver that reads every request and never answers."""
    receiver = Receiver()
    receiver.default = HANG
    yield from serve(receiver)


def pauses_to(url: str) -> WebhookEndpoint:
    return WebhookEndpointFactory.create(
        url=url, all_types=False, event_types=[EventType.CAMPAIGN_PAUSED]
    )


def running_campaign() -> Campaign:
    return CampaignFactory.create(brand__daily_budget=Decimal(10))


def test_a_pause_reaches_the_receiver_through_a_worker_after_the_commit(
    broker: str, healthy: Receiver
) -> None:
    endpoint = pauses_to(healthy.url())
    campaign = running_campaign()
    record_spend(campaign.pk, "1")  # evaluated: running

    with transaction.atomic():
        record_spend(campaign.pk, "9")  # exhausted: paused
        queued_before_commit = queue_length()
    queued_after_commit = queue_length()
    with running_worker():
        waited = wait_until(lambda: bool(healthy.to("/hook")), "the worker delivering the pause")
        wait_until(
            lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).exists(),
            "the delivery marked delivered",
        )

    assert (queued_before_commit, queued_after_commit) == (0, 1)
    [request] = healthy.to("/hook")
    assert request.headers["webhook-id"] == (
        WebhookDelivery.objects.get(endpoint=endpoint).event.event_id
    )
    assert waited < 10


def test_the_dispatcher_sends_what_a_lost_message_left(broker: str, healthy: Receiver) -> None:
    pauses_to(healthy.url())
    campaign = running_campaign()
    record_spend(campaign.pk, "1")
    record_spend(campaign.pk, "9")
    lost = app.control.purge()  # Redis lost the hand-over

    with running_worker():
        tasks.dispatch_webhooks.delay()  # as Beat does every 10 s
        wait_until(lambda: bool(healthy.to("/hook")), "the dispatched delivery")

    assert lost == 1
    assert len(healthy.to("/hook")) == 1


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_receiver_that_never_answers_delays_a_healthy_one_by_at_most_one_timeout(
    broker: str, healthy: Receiver, hanging: Receiver, settings: Settings, concurrency: int
) -> None:
    settings.WEBHOOK_TIMEOUT = 2
    dead = pauses_to(hanging.url())  # handed over first: the worst case for one worker
    pauses_to(healthy.url())
    campaign = running_campaign()
    record_spend(campaign.pk, "1")
    record_spend(campaign.pk, "9")  # committed: both endpoints handed over

    with running_worker(concurrency=concurrency):
        started = time.monotonic()
        wait_until(lambda: bool(healthy.to("/hook")), "the healthy receiver's delivery")
        delay = healthy.to("/hook")[0].at - started
        wait_until(
            lambda: WebhookDelivery.objects.filter(endpoint=dead, attempts=1).exists(),
            "the hanging receiver's try ending",
        )

    print(
        f"\nhealthy endpoint's delivery, {concurrency} worker(s), a dead one beside: {delay:.2f} s"
    )
    assert hanging.to("/hook")  # the dead receiver was tried: the fault happened
    assert WebhookDelivery.objects.get(endpoint=dead).last_error == "no answer within 2 s"
    assert delay < settings.WEBHOOK_TIMEOUT + 1.5
