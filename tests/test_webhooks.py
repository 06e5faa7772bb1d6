"""Webhooks (issue 15, items 3 and 5): each event delivered at least once to each
endpoint that wants it, in order, signed per Standard Webhooks, to a real HTTP receiver
on loopback; retried with backoff; a dead endpoint switched off; URLs that could reach
the inside network refused at save and at delivery."""

import ipaddress
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks, Settings
from standardwebhooks import Webhook

from ads import tasks
from ads.models import (
    Brand,
    Campaign,
    DeliveryStatus,
    EndpointKind,
    Event,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
)
from ads.outbound import UrlRefused, address_kind, check_url
from ads.services import record_spend, refresh_campaign_states, save_brand
from ads.services.webhooks import due_endpoints, retry_delay
from tests.conftest import NOW, admin_url
from tests.factories import BrandFactory, CampaignFactory, WebhookEndpointFactory
from tests.html_forms import read_form
from tests.receiver import HANG, Handler, Receiver, ReceiverServer
from tests.test_settings import assert_one_error_line, manage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock", "loopback_webhooks")]


def pausing_campaign(name: str = "Search", brand: str = "Acme") -> Campaign:
    """A running campaign whose brand's daily budget (10.00) one spend of 10.00 exhausts."""
    return CampaignFactory.create(
        name=name, brand__name=brand, brand__daily_budget=Decimal("10.00"), evaluated_at=NOW
    )


def pause(campaign: Campaign) -> Event:
    record_spend(campaign.pk, "10.00", at=NOW)
    return Event.objects.get(campaign=campaign, type=EventType.CAMPAIGN_PAUSED)


def switch_brand(brand: Brand, *, on: bool) -> None:
    brand.is_active = on
    save_brand(brand, changed_fields=["is_active"], actor="alice", at=NOW)


def pauses_to(url: str, **fields: Any) -> WebhookEndpoint:
    """An endpoint for campaign pauses only (a new campaign's start and the budget alerts
    of a pausing spend are events too)."""
    return WebhookEndpointFactory.create(
        url=url, all_types=False, event_types=[EventType.CAMPAIGN_PAUSED], **fields
    )


def delivery(endpoint: WebhookEndpoint, event: Event) -> WebhookDelivery:
    return WebhookDelivery.objects.get(endpoint=endpoint, event=event)


# --- Signed, self-contained, the same id on every try -----------------------------------


def test_a_delivery_is_signed_per_standard_webhooks_and_carries_the_whole_event(
    receiver: Receiver,
) -> None:
    endpoint = pauses_to(receiver.url())
    campaign = pausing_campaign()
    paused = pause(campaign)

    tasks.deliver_webhooks(endpoint.pk)

    [request] = receiver.to("/hook")
    verified = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == paused.event_id
    assert request.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert request.headers["content-type"] == "application/json"
    assert verified == {
        "type": "campaign.paused",
        "timestamp": "2026-11-27T12:00:00Z",
        "data": {
            "id": paused.event_id,
            "type": "campaign.paused",
            "created_at": "2026-11-27T12:00:00Z",
            "brand_id": campaign.brand_id,
            "campaign_id": campaign.pk,
            "stream": f"campaign:{campaign.pk}",
            "sequence": 2,
            "payload": paused.payload,
        },
    }
    sent = delivery(endpoint, paused)
    assert (sent.status, sent.attempts, sent.last_status_code, sent.delivered_at) == (
        DeliveryStatus.DELIVERED,
        1,
        204,
        NOW,
    )


def test_a_signature_made_with_another_secret_does_not_verify(receiver: Receiver) -> None:
    endpoint = pauses_to(receiver.url())
    pause(pausing_campaign())

    tasks.deliver_webhooks(endpoint.pk)

    [request] = receiver.to("/hook")
    other = pauses_to(receiver.url("/other"))
    with pytest.raises(Exception, match="No matching signature found"):
        Webhook(other.secret).verify(request.body, request.headers)


def test_a_retry_after_a_500_keeps_the_webhook_id(
    receiver: Receiver, time_machine: time_machine.TimeMachineFixture
) -> None:
    endpoint = pauses_to(receiver.url())
    paused = pause(pausing_campaign())
    receiver.answer("/hook", 500)

    tasks.deliver_webhooks(endpoint.pk)
    failed = delivery(endpoint, paused)
    time_machine.move_to(NOW + timedelta(seconds=29), tick=False)
    tasks.deliver_webhooks(endpoint.pk)  # not due yet
    time_machine.move_to(NOW + timedelta(seconds=30), tick=False)
    tasks.deliver_webhooks(endpoint.pk)

    first, second = receiver.to("/hook")
    assert (failed.status, failed.attempts, failed.last_status_code, failed.last_error) == (
        DeliveryStatus.PENDING,
        1,
        500,
        "HTTP 500: answer 500",
    )
    assert failed.next_attempt_at == NOW + timedelta(seconds=30)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == paused.event_id
    assert first.body == second.body
    assert int(second.headers["webhook-timestamp"]) == int(NOW.timestamp()) + 30
    assert Webhook(endpoint.secret).verify(second.body, second.headers)["data"]["id"] == (
        paused.event_id
    )
    assert delivery(endpoint, paused).status == DeliveryStatus.DELIVERED


def test_retries_wait_30_s_then_twice_as_long_each_time_at_most_an_hour() -> None:
    waits = [retry_delay(attempts).total_seconds() for attempts in range(1, 10)]

    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert retry_delay(1, retry_after=120) == timedelta(seconds=120)  # the receiver asked
    assert retry_delay(1, retry_after=10**9) == timedelta(hours=1)


# --- Order -------------------------------------------------------------------------------


def test_the_receiver_gets_each_campaigns_events_in_sequence_even_after_a_failure(
    receiver: Receiver, time_machine: time_machine.TimeMachineFixture
) -> None:
    endpoint = WebhookEndpointFactory.create(url=receiver.url())
    search = pausing_campaign("Search", "Acme")
    display = CampaignFactory.create(name="Display", brand=search.brand, evaluated_at=NOW)
    other = pausing_campaign("Video", "Other")
    receiver.answer("/hook", 204, 500)  # the second event fails once
    for _ in range(3):
        switch_brand(search.brand, on=False)
        switch_brand(other.brand, on=False)
        switch_brand(search.brand, on=True)
        switch_brand(other.brand, on=True)

    tasks.deliver_webhooks(endpoint.pk)  # one delivered, then a failure stops the run
    after_failure = len(receiver.to("/hook"))
    time_machine.move_to(NOW + timedelta(seconds=30), tick=False)
    tasks.deliver_webhooks(endpoint.pk)

    arrived = [json.loads(r.body)["data"] for r in receiver.to("/hook")]
    assert after_failure == 2
    assert arrived[1] == arrived[2]  # the failed one, again, before anything after it
    planned = Event.objects.filter(deliveries__endpoint=endpoint)
    assert {a["id"] for a in arrived} == set(planned.values_list("event_id", flat=True))
    streams: dict[str, list[int]] = {}
    for data in arrived:
        numbers = streams.setdefault(data["stream"], [])
        if data["sequence"] not in numbers:
            numbers.append(data["sequence"])
    for campaign in (search, display, other):  # started, then 3 pauses and 3 resumes
        assert streams[f"campaign:{campaign.pk}"] == [1, 2, 3, 4, 5, 6, 7]
    assert not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists()


def test_a_delivered_event_is_not_sent_again_by_a_second_run(receiver: Receiver) -> None:
    endpoint = pauses_to(receiver.url())
    pause(pausing_campaign())

    tasks.deliver_webhooks(endpoint.pk)
    tasks.deliver_webhooks(endpoint.pk)  # a redelivered task message

    assert len(receiver.to("/hook")) == 1


def test_an_endpoint_another_worker_is_sending_is_left_to_it_until_its_lease_lapses(
    receiver: Receiver, time_machine: time_machine.TimeMachineFixture
) -> None:
    endpoint = pauses_to(receiver.url())
    pause(pausing_campaign())
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        leased_until=NOW + timedelta(seconds=90), lease_holder="a worker that died"
    )

    tasks.deliver_webhooks(endpoint.pk)
    left_alone, dispatched_meanwhile = receiver.to("/hook"), due_endpoints(at=NOW)
    time_machine.move_to(NOW + timedelta(seconds=90), tick=False)
    dispatched_later = due_endpoints(at=NOW + timedelta(seconds=90))
    tasks.deliver_webhooks(endpoint.pk)

    assert (left_alone, dispatched_meanwhile) == ([], [])
    assert dispatched_later == [endpoint.pk]
    assert len(receiver.to("/hook")) == 1


def test_the_dispatcher_finds_endpoints_whose_earliest_undelivered_event_is_due(
    receiver: Receiver,
) -> None:
    waiting = pauses_to(receiver.url("/waiting"))
    failing = pauses_to(receiver.url("/failing"))
    switched_off = pauses_to(receiver.url("/off"))
    done = pauses_to(receiver.url("/done"))
    pause(pausing_campaign())
    receiver.answer("/failing", 500)
    tasks.deliver_webhooks(failing.pk)
    tasks.deliver_webhooks(done.pk)
    WebhookEndpoint.objects.filter(pk=switched_off.pk).update(is_enabled=False)

    assert due_endpoints(at=NOW) == [waiting.pk]
    assert due_endpoints(at=NOW + timedelta(seconds=30)) == [waiting.pk, failing.pk]


# --- Which endpoint gets what -------------------------------------------------------------


def test_an_endpoint_gets_only_the_types_and_brands_it_chose(receiver: Receiver) -> None:
    acme = pausing_campaign("Search", "Acme")
    other = pausing_campaign("Video", "Other")
    chosen = WebhookEndpointFactory.create(
        url=receiver.url("/chosen"),
        all_types=False,
        event_types=[EventType.CAMPAIGN_PAUSED],
        brands=[acme.brand],
    )
    everything = WebhookEndpointFactory.create(url=receiver.url("/all"))
    pause(acme)
    pause(other)
    switch_brand(acme.brand, on=False)  # a settings change

    tasks.deliver_webhooks(chosen.pk)
    tasks.deliver_webhooks(everything.pk)

    got = [json.loads(r.body)["data"] for r in receiver.to("/chosen")]
    assert [(d["type"], d["campaign_id"]) for d in got] == [("campaign.paused", acme.pk)]
    assert {json.loads(r.body)["type"] for r in receiver.to("/all")} == {
        "campaign.paused",
        "budget.threshold_reached",
        "brand.settings_changed",
        "campaign.reasons_changed",  # paused, now also switched off
    }
    since = Event.objects.exclude(type=EventType.CAMPAIGN_RESUMED)  # the two campaigns' start
    assert len(receiver.to("/all")) == since.count()


def test_no_delivery_is_planned_for_a_switched_off_endpoint(receiver: Receiver) -> None:
    WebhookEndpointFactory.create(url=receiver.url(), is_enabled=False)

    pause(pausing_campaign())

    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("campaigns", [10, 40])
def test_planning_deliveries_takes_two_queries_however_many_events(
    receiver: Receiver, campaigns: int, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    WebhookEndpointFactory.create(url=receiver.url("/a"))
    WebhookEndpointFactory.create(url=receiver.url("/b"), all_types=False, event_types=["x"])
    brand = BrandFactory.create()
    Campaign.objects.bulk_create(Campaign(brand=brand, name=f"c{n}") for n in range(campaigns))
    refresh_campaign_states(at=NOW, actor="test")
    Brand.objects.update(daily_budget=Decimal(0))
    WebhookDelivery.objects.all().delete()

    with django_assert_max_num_queries(12):  # the enforcement pass's 11, and the insert
        refresh_campaign_states(at=NOW, actor="enforce_budget_limits")

    assert WebhookDelivery.objects.count() == campaigns  # endpoint /b wants no such type


# --- A dead endpoint ------------------------------------------------------------------------


def test_a_dead_endpoint_is_switched_off_after_a_day_and_its_brands_contacts_are_mailed(
    receiver: Receiver,
    time_machine: time_machine.TimeMachineFixture,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    campaign = pausing_campaign()
    Brand.objects.filter(pk=campaign.brand_id).update(contact_email="ops@acme.example")
    second = BrandFactory.create(contact_email="ads@beta.example")
    BrandFactory.create(contact_email="not@concerned.example")
    endpoint = pauses_to(url=receiver.url("/hook?token=s3cr3t"), brands=[campaign.brand, second])
    paused = pause(campaign)
    receiver.default = 503
    tries = []
    while WebhookEndpoint.objects.get(pk=endpoint.pk).is_enabled:
        with django_capture_on_commit_callbacks() as callbacks:
            tasks.deliver_webhooks(endpoint.pk)
        waiting = delivery(endpoint, paused)
        assert waiting.last_attempt_at is not None
        assert waiting.next_attempt_at is not None
        tries.append(waiting.last_attempt_at)
        time_machine.move_to(waiting.next_attempt_at, tick=False)

    stopped = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert tries[-2] < NOW + timedelta(hours=24) <= tries[-1]
    assert stopped.disabled_at == tries[-1]
    assert stopped.disabled_reason.startswith("failing since 2026-11-27 12:00 UTC (24.")
    assert stopped.disabled_reason.endswith("h); last error: HTTP 503: answer 503")
    assert len(callbacks) == 1  # the mail, queued once the switch-off commits
    assert "switched off: failing since 2026-11-27 12:00 UTC" in caplog.text
    assert "s3cr3t" not in caplog.text

    tasks.send_endpoint_disabled_mail(endpoint.pk)

    assert sorted(m.to[0] for m in mail.outbox) == ["ads@beta.example", "ops@acme.example"]
    sent = mail.outbox[0]
    assert sent.subject == (
        f"Webhook endpoint {endpoint.name} switched off: its receiver keeps failing"
    )
    assert f"({receiver.url('')})" in sent.body
    assert "last error: HTTP 503: answer 503" in sent.body
    assert "s3cr3t" not in sent.body
    assert f"/admin/ads/webhookendpoint/{endpoint.pk}/change/" in sent.body
    assert delivery(endpoint, paused).status == DeliveryStatus.PENDING  # kept


def test_switched_on_again_an_endpoint_sends_what_waited_at_once(
    receiver: Receiver, admin_client: Client
) -> None:
    endpoint = pauses_to(receiver.url())
    paused = pause(pausing_campaign())
    receiver.answer("/hook", 503)
    tasks.deliver_webhooks(endpoint.pk)  # fails: next try in 30 s
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_enabled=False, disabled_at=NOW, disabled_reason="failing since ..."
    )

    response = admin_client.post(
        admin_url(WebhookEndpoint, "changelist"),
        {"action": "switch_on", "_selected_action": [endpoint.pk]},
    )
    tasks.deliver_webhooks(endpoint.pk)

    assert response.status_code == 302
    on = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (on.is_enabled, on.disabled_at, on.disabled_reason, on.failing_since) == (
        True,
        None,
        "",
        None,
    )
    assert delivery(endpoint, paused).status == DeliveryStatus.DELIVERED
    assert len(receiver.to("/hook")) == 2


# --- Send again ------------------------------------------------------------------------------


def test_send_again_sends_a_delivered_event_once_more_with_the_same_id(
    receiver: Receiver, admin_client: Client
) -> None:
    endpoint = pauses_to(receiver.url())
    paused = pause(pausing_campaign())
    tasks.deliver_webhooks(endpoint.pk)
    sent = delivery(endpoint, paused)

    response = admin_client.post(
        admin_url(WebhookDelivery, "changelist"),
        {"action": "send_again", "_selected_action": [sent.pk]},
        follow=True,
    )
    queued = delivery(endpoint, paused)
    tasks.deliver_webhooks(endpoint.pk)

    assert "1 delivery(ies) due again now" in response.content.decode()
    assert (queued.status, queued.next_attempt_at) == (DeliveryStatus.PENDING, NOW)
    first, second = receiver.to("/hook")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == paused.event_id
    assert delivery(endpoint, paused).attempts == 2


def test_the_deliveries_list_shows_tries_answers_and_the_next_try(
    receiver: Receiver, admin_client: Client
) -> None:
    endpoint = pauses_to(receiver.url(), name="DSP")
    paused = pause(pausing_campaign())
    receiver.answer("/hook", 502)
    tasks.deliver_webhooks(endpoint.pk)

    page = admin_client.get(admin_url(WebhookDelivery, "changelist"), {"state": "failing"})

    text = page.content.decode()
    assert page.status_code == 200
    assert paused.event_id in text
    assert "HTTP 502: answer 502" in text
    assert "2026-11-27 12:00:30 UTC" in text  # the next try
    assert admin_client.get(admin_url(delivery(endpoint, paused))).status_code == 200


# --- Redirects ---------------------------------------------------------------------------------


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    endpoint = pauses_to(receiver.url())
    receiver.redirect_to = receiver.url("/elsewhere")
    receiver.answer("/hook", 307)
    paused = pause(pausing_campaign())

    tasks.deliver_webhooks(endpoint.pk)

    assert [r.path for r in receiver.received] == ["/hook"]
    failed = delivery(endpoint, paused)
    assert (failed.status, failed.last_status_code) == (DeliveryStatus.PENDING, 307)
    assert failed.last_error == f"HTTP 307: redirect to {receiver.url('/elsewhere')} not followed"


# --- Slow and dead receivers ---------------------------------------------------------------------


def test_a_receiver_that_never_answers_costs_one_timeout(
    receiver: Receiver, settings: Settings
) -> None:
    settings.WEBHOOK_TIMEOUT = 0.5
    endpoint = pauses_to(receiver.url())
    receiver.answer("/hook", HANG)
    paused = pause(pausing_campaign())

    started = time.monotonic()
    tasks.deliver_webhooks(endpoint.pk)
    took = time.monotonic() - started

    assert 0.5 <= took < 1.5
    assert delivery(endpoint, paused).last_error == "no answer within 0.5 s"


def test_a_receiver_that_answers_a_byte_at_a_time_is_cut_off_at_the_timeout(
    settings: Settings, dripping_receiver: str
) -> None:
    settings.WEBHOOK_TIMEOUT = 0.5
    endpoint = pauses_to(dripping_receiver)
    paused = pause(pausing_campaign())

    started = time.monotonic()
    tasks.deliver_webhooks(endpoint.pk)
    took = time.monotonic() - started

    assert took < 1.5
    assert delivery(endpoint, paused).last_error == "no answer within 0.5 s"


@pytest.fixture
def dripping_receiver() -> Iterator[str]:
    """A receiver that reads the request, then sends its status line a byte every 0.2 s:
    each read gets something, so only a deadline for the whole answer stops it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    thread.join()
    server.close()


def test_a_refused_connection_is_a_failure_tried_again_later() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    endpoint = pauses_to(f"http://127.0.0.1:{port}/hook")
    paused = pause(pausing_campaign())

    tasks.deliver_webhooks(endpoint.pk)

    failed = delivery(endpoint, paused)
    assert (failed.last_error, failed.last_status_code, failed.attempts) == (
        "connection refused",
        None,
        1,
    )
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since == NOW


# --- Where webhooks may go (server-side request forgery) -------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a01:203", "private"),  # NAT64 of 10.1.2.3
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_addresses_webhooks_may_not_go_to(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def add_endpoint(client: Client, url: str, **fields: str) -> Any:
    return client.post(
        admin_url(WebhookEndpoint, "add"),
        {
            "name": "DSP",
            "kind": "webhook",
            "url": url,
            "all_types": "on",
            "all_brands": "on",
            "is_enabled": "on",
        }
        | fields,
    )


def form_errors(response: Any) -> dict[str, list[str]]:
    return dict(response.context["adminform"].form.errors)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "http://127.0.0.1:9/hook",
            "The URL goes to 127.0.0.1, a loopback address: only public addresses are allowed "
            "(the setting WEBHOOK_ALLOW_PRIVATE allows others).",
        ),
        (
            "https://169.254.169.254/latest/meta-data/",
            "The URL goes to 169.254.169.254, a link-local address: only public addresses are "
            "allowed (the setting WEBHOOK_ALLOW_PRIVATE allows others).",
        ),
        (
            "https://[::ffff:10.0.0.1]/",
            "The URL goes to ::ffff:a00:1, a private address: only public addresses are allowed "
            "(the setting WEBHOOK_ALLOW_PRIVATE allows others).",
        ),
        (
            "https://localhost/hook",
            "The URL names localhost, which resolves to 127.0.0.1, a loopback address: only "
            "public addresses are allowed (the setting WEBHOOK_ALLOW_PRIVATE allows others).",
        ),
    ],
)
def test_a_url_reaching_the_inside_network_is_refused_at_save(
    admin_client: Client, settings: Settings, url: str, error: str
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False

    response = add_endpoint(admin_client, url)

    assert response.status_code == 200
    errors = form_errors(response)["url"]
    assert errors in ([error], [error.replace("127.0.0.1", "::1")])
    assert not WebhookEndpoint.objects.exists()


def test_plain_http_is_refused_at_save_without_the_allow_setting(
    admin_client: Client, settings: Settings
) -> None:
    settings.WEBHOOK_ALLOW_HTTP = False

    response = add_endpoint(admin_client, "http://hooks.example.com/in")

    assert form_errors(response) == {
        "url": [
            "The URL must start with https:// (plain http:// is allowed only with the setting "
            "WEBHOOK_ALLOW_HTTP)."
        ]
    }
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://hooks.example.com/in", "The URL must start with https://."),
        (
            "https://user:pw@hooks.example.com/in",
            "The URL must not carry a user name or password before the host.",
        ),
    ],
)
def test_other_urls_refused_at_save(admin_client: Client, url: str, error: str) -> None:
    response = add_endpoint(admin_client, url)

    assert error in form_errors(response)["url"]


def test_a_private_url_is_refused_at_delivery_time_too(
    receiver: Receiver, settings: Settings
) -> None:
    endpoint = pauses_to(receiver.url())  # saved while allowed
    paused = pause(pausing_campaign())
    settings.WEBHOOK_ALLOW_PRIVATE = False

    tasks.deliver_webhooks(endpoint.pk)

    assert receiver.received == []
    assert delivery(endpoint, paused).last_error == (
        "refused: the URL goes to 127.0.0.1, a loopback address: only public addresses are "
        "allowed (the setting WEBHOOK_ALLOW_PRIVATE allows others)"
    )


def test_plain_http_is_refused_at_delivery_time_without_the_allow_setting(
    receiver: Receiver, settings: Settings
) -> None:
    endpoint = pauses_to(receiver.url())
    paused = pause(pausing_campaign())
    settings.WEBHOOK_ALLOW_HTTP = False

    tasks.deliver_webhooks(endpoint.pk)

    assert receiver.received == []
    assert delivery(endpoint, paused).last_error.startswith(
        "refused: the URL must start with https"
    )


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[str]]]:
    """The system's resolver (outside this process), answering for made-up names: each
    name maps to the answers it gives, one list of addresses per lookup. Every other
    name resolves as usual."""
    answers: dict[str, list[list[str]]] = {}
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        given = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        return [info for address in given for info in real(address, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    answers["asked"] = asked  # type: ignore[assignment]  # the names looked up, in order
    return answers


def test_a_name_is_resolved_once_and_the_connection_goes_to_the_address_checked(
    receiver: Receiver, names: dict[str, Any]
) -> None:
    # First answer: the receiver's address. Any later one (a rebinding) would go nowhere.
    names["hooks.example"] = [["127.0.0.1"], ["127.0.0.2"]]
    endpoint = pauses_to(receiver.url(host="hooks.example"))
    paused = pause(pausing_campaign())

    tasks.deliver_webhooks(endpoint.pk)

    [request] = receiver.to("/hook")
    assert request.headers["host"] == f"hooks.example:{receiver.port}"
    assert names["asked"] == ["hooks.example"]
    assert delivery(endpoint, paused).status == DeliveryStatus.DELIVERED


def test_a_name_with_one_private_address_among_public_ones_is_refused(
    receiver: Receiver, names: dict[str, Any], settings: Settings
) -> None:
    names["mixed.example"] = [["93.184.216.34", "127.0.0.1"]]
    endpoint = pauses_to(receiver.url(host="mixed.example"))
    paused = pause(pausing_campaign())
    settings.WEBHOOK_ALLOW_PRIVATE = False

    tasks.deliver_webhooks(endpoint.pk)

    assert receiver.received == []
    assert delivery(endpoint, paused).last_error == (
        "refused: the URL names mixed.example, which resolves to 127.0.0.1, a loopback address: "
        "only public addresses are allowed (the setting WEBHOOK_ALLOW_PRIVATE allows others)"
    )


@pytest.fixture
def tls_receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Receiver, list[str]]]:
    """A receiver speaking HTTPS on loopback with a certificate for `receiver.test`, which
    this process trusts (SSL_CERT_FILE); yields it and the server names clients asked for
    (SNI)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=receiver.test",
         "-addext", "subjectAltName=DNS:receiver.test"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    asked: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def note_name(sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        asked.append(name or "")

    context.sni_callback = note_name
    receiver = Receiver()
    server = ReceiverServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.receiver = receiver
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver, asked
    server.shutdown()
    server.server_close()
    thread.join()


def test_https_speaks_tls_to_the_name_while_connecting_to_the_checked_address(
    tls_receiver: tuple[Receiver, list[str]], names: dict[str, Any], settings: Settings
) -> None:
    receiver, server_names = tls_receiver
    names["receiver.test"] = [["127.0.0.1"]]
    settings.WEBHOOK_ALLOW_HTTP = False
    endpoint = pauses_to(f"https://receiver.test:{receiver.port}/hook")
    paused = pause(pausing_campaign())

    tasks.deliver_webhooks(endpoint.pk)

    assert server_names == ["receiver.test"]
    [request] = receiver.to("/hook")
    assert request.headers["host"] == f"receiver.test:{receiver.port}"
    assert delivery(endpoint, paused).status == DeliveryStatus.DELIVERED


def test_https_refuses_a_certificate_for_another_name(
    tls_receiver: tuple[Receiver, list[str]], names: dict[str, Any]
) -> None:
    receiver, _ = tls_receiver
    names["impostor.test"] = [["127.0.0.1"]]
    endpoint = pauses_to(f"https://impostor.test:{receiver.port}/hook")
    paused = pause(pausing_campaign())

    tasks.deliver_webhooks(endpoint.pk)

    assert receiver.received == []
    assert delivery(endpoint, paused).last_error.startswith("TLS certificate not accepted")


def test_check_url_accepts_a_public_https_url(names: dict[str, Any], settings: Settings) -> None:
    settings.WEBHOOK_ALLOW_HTTP = settings.WEBHOOK_ALLOW_PRIVATE = False
    names["hooks.example.com"] = [["93.184.216.34", "2606:2800:220:1::1"]]

    target = check_url("https://hooks.example.com/in?x=1")

    assert (target.host, target.port, target.path) == ("hooks.example.com", 443, "/in?x=1")
    assert [str(a) for a in target.addresses] == ["93.184.216.34", "2606:2800:220:1::1"]


# --- The signing secret: shown once -------------------------------------------------------------


def test_the_signing_secret_is_shown_once_when_the_endpoint_is_created(
    admin_client: Client, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    response = add_endpoint(admin_client, receiver.url())

    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.secret in response.content.decode()
    for page in (admin_url(endpoint), admin_url(WebhookEndpoint, "changelist")):
        assert endpoint.secret not in admin_client.get(page).content.decode()
    assert endpoint.secret not in caplog.text
    pause(pausing_campaign())
    tasks.deliver_webhooks(endpoint.pk)
    requests = receiver.to("/hook")
    assert len(requests) == 5  # started, 3 alerts, paused
    for request in requests:
        assert Webhook(endpoint.secret).verify(request.body, request.headers)
    assert endpoint.secret not in caplog.text


def test_rotating_the_secret_shows_the_new_one_once_and_signs_with_it(
    admin_client: Client, receiver: Receiver
) -> None:
    endpoint = pauses_to(receiver.url())
    old = endpoint.secret

    response = admin_client.post(
        admin_url(WebhookEndpoint, "changelist"),
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
    )

    new = WebhookEndpoint.objects.get().secret
    assert new != old
    assert new in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    pause(pausing_campaign())
    tasks.deliver_webhooks(endpoint.pk)
    [request] = receiver.to("/hook")
    assert Webhook(new).verify(request.body, request.headers)


def test_a_new_slack_endpoint_gets_pauses_resumes_and_alerts_by_default(
    admin_client: Client, receiver: Receiver
) -> None:
    response = admin_client.post(
        admin_url(WebhookEndpoint, "add"),
        {
            "name": "#ad-ops",
            "kind": "slack",
            "url": receiver.url(),
            "all_brands": "on",
            "is_enabled": "on",
        },
    )

    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 302  # no signing secret to copy for Slack
    assert (endpoint.kind, endpoint.all_types, endpoint.is_enabled) == (
        EndpointKind.SLACK,
        False,
        True,
    )
    assert endpoint.event_types == [
        "campaign.paused",
        "campaign.resumed",
        "budget.threshold_reached",
    ]


def test_a_new_webhook_endpoint_gets_every_type_by_default(
    admin_client: Client, receiver: Receiver
) -> None:
    add_endpoint(admin_client, receiver.url(), all_types="")

    assert WebhookEndpoint.objects.get().all_types is True


@pytest.mark.parametrize(
    ("fields", "field", "error"),
    [
        (
            {"event_types": "campaign.paused"},
            "event_types",
            "Event types: choose some types or tick 'All event types', not both.",
        ),
        (
            {"all_brands": ""},
            "brands",
            "Brands: choose the brands this endpoint receives events of, or tick 'All brands'.",
        ),
    ],
)
def test_types_and_brands_are_chosen_or_all_not_both_nor_neither(
    admin_client: Client, receiver: Receiver, fields: dict[str, str], field: str, error: str
) -> None:
    response = add_endpoint(admin_client, receiver.url(), **fields)

    assert form_errors(response)[field] == [error]


def test_an_endpoint_is_deleted_with_its_deliveries(
    admin_client: Client, receiver: Receiver
) -> None:
    endpoint = pauses_to(receiver.url())
    pause(pausing_campaign())

    response = admin_client.post(admin_url(endpoint, "delete"), {"post": "yes"})

    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_an_unspent_brand_is_deleted_with_its_events_deliveries(
    admin_client: Client, receiver: Receiver
) -> None:
    WebhookEndpointFactory.create(url=receiver.url())
    campaign = CampaignFactory.create(evaluated_at=NOW)  # started: an event, a delivery
    assert WebhookDelivery.objects.exists()

    response = admin_client.post(admin_url(campaign.brand, "delete"), {"post": "yes"})

    assert response.status_code == 302
    assert not Brand.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_a_switched_off_endpoint_sends_nothing_while_off(receiver: Receiver) -> None:
    endpoint = pauses_to(receiver.url())
    paused = pause(pausing_campaign())
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_enabled=False)

    tasks.deliver_webhooks(endpoint.pk)

    assert receiver.received == []
    assert delivery(endpoint, paused).status == DeliveryStatus.PENDING


def test_switched_on_again_in_its_form_an_endpoint_forgets_its_failure_and_sends_at_once(
    receiver: Receiver, admin_client: Client
) -> None:
    endpoint = pauses_to(receiver.url())
    paused = pause(pausing_campaign())
    receiver.answer("/hook", 503)
    tasks.deliver_webhooks(endpoint.pk)  # fails: failing since now, next try in 30 s
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_enabled=False)  # by a person
    page = read_form(admin_client.get(admin_url(endpoint)).content.decode(), "webhookendpoint_form")
    page["is_enabled"] = ["on"]

    response = admin_client.post(admin_url(endpoint), page)
    tasks.deliver_webhooks(endpoint.pk)

    assert response.status_code == 302
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since is None
    assert delivery(endpoint, paused).status == DeliveryStatus.DELIVERED


def test_an_international_host_name_is_resolved_in_its_dns_spelling(
    names: dict[str, Any], settings: Settings
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False
    names["xn--bcher-kva.example"] = [["93.184.216.34"]]

    assert check_url("https://bücher.example/in").host == "xn--bcher-kva.example"


def test_a_host_name_dns_cannot_spell_is_refused() -> None:
    with pytest.raises(UrlRefused, match=r"cannot be written in DNS \(a\.\.b\)"):
        check_url("https://a..b/in")


@pytest.mark.process
@pytest.mark.parametrize(
    ("setting", "value", "start"),
    [
        ("WEBHOOK_DISABLE_AFTER", "3600", "error: WEBHOOK_DISABLE_AFTER=3600 is under a day"),
        ("WEBHOOK_TIMEOUT", "0", "error: WEBHOOK_TIMEOUT=0.0 must be more than 0"),
        ("WEBHOOK_TIMEOUT", "120", "error: WEBHOOK_TIMEOUT=120.0 must be more than 0"),
    ],
)
def test_a_bad_webhook_setting_is_one_line_naming_it(setting: str, value: str, start: str) -> None:
    result = manage("check", DEBUG="1", **{setting: value})

    assert_one_error_line(result, start)
