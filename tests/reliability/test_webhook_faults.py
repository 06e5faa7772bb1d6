"""A webhook receiver that is down for minutes while hundreds of campaigns change state
(issue 15): refusing connections, then answering 500, then hanging; then back. Real
processes: a private Redis, two Celery workers and Beat on the test database, and the
reference receiver (integration/reference_receiver.py) as the endpoint once it is up.
One worker is killed while it delivers. At the end every event has reached the
receiver, de-duplicated by id to exactly once, with no gap in any stream, and the
pull feed returns the same set."""

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.db.models import Max
from django.test import Client
from django.utils import timezone
from pytest_django import Settings

from ad_budget_project.celery import app as celery_app
from ads.models import Brand, DeliveryStatus, Event, WebhookDelivery, WebhookEndpoint
from ads.services import set_campaigns_enabled
from ads.services.webhooks import new_secret
from integration.reference_receiver import Store
from tests.conftest import make_api_key, wait_until
from tests.factories import BrandFactory, CampaignFactory
from tests.reliability.processes import (
    LOGS,
    ROOT,
    every_second,
    free_port,
    programs,
    redis_server,
    report,
    start_beat,
    start_worker,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.process]

BRANDS, CAMPAIGNS_PER_BRAND = 40, 5  # 200 campaigns
PHASE_SECONDS = 50  # each way of being down: refused, 500, hanging
# Fast retries and leases for the processes (production: 30 s doubling to 1 h; 90 s).
WORKER_ENV = {
    "WEBHOOK_ALLOW_HTTP": "1",
    "WEBHOOK_ALLOW_PRIVATE": "1",
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_FIRST_RETRY": "1",
    "WEBHOOK_LONGEST_RETRY": "4",
    "WEBHOOK_LEASE": "12",
    "CELERY_VISIBILITY_TIMEOUT": "10",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
}


class Answer500(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def answering_500(port: int) -> Iterator[None]:
    server = ThreadingHTTPServer(("127.0.0.1", port), Answer500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def hanging(port: int) -> Iterator[None]:
    """Accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@contextmanager
def reference_receiver(port: int, store: Path, secret: str) -> Iterator[subprocess.Popen[str]]:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / "reference-receiver.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "integration" / "reference_receiver.py"), "serve",
         "--port", str(port), "--db", str(store), "--max-hold", "600"],
        env=os.environ | {"WEBHOOK_SECRET": secret}, stdout=log, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def toggle(campaign_ids: list[int], *, enabled: bool) -> None:
    """A person switches campaigns off or on, brand by brand: each is a setting change
    and a pause or a resume."""
    for start in range(0, len(campaign_ids), CAMPAIGNS_PER_BRAND):
        chunk = campaign_ids[start : start + CAMPAIGNS_PER_BRAND]
        set_campaigns_enabled(chunk, enabled=enabled, actor="ops", at=timezone.now())


def delivered() -> int:
    return WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count()


def feed_ids(client: Client, key: str) -> set[str]:
    ids: set[str] = set()
    after: str | None = None
    while True:
        query = {"limit": 500} | ({"after": after} if after else {})
        page = client.get("/api/v1/events", query, HTTP_X_API_KEY=key).json()
        ids |= {event["id"] for event in page["events"]}
        after = page["next_cursor"]
        if not page["has_more"]:
            return ids


def test_a_receiver_down_for_minutes_gets_every_event_once_in_order(
    settings: Settings, tmp_path: Path
) -> None:
    settings.WEBHOOK_ALLOW_HTTP = settings.WEBHOOK_ALLOW_PRIVATE = True
    port = free_port()
    secret = new_secret()
    WebhookEndpoint.objects.create(
        name="connector", url=f"http://127.0.0.1:{port}/hooks", all_types=True,
        all_brands=True, is_enabled=True, secret=secret,
    )  # fmt: skip
    every_second("ads.dispatch_webhooks")
    with redis_server() as redis, programs() as started:
        started += [
            start_worker("hooks-a", broker=redis.url, env=WORKER_ENV),
            start_worker("hooks-b", broker=redis.url, env=WORKER_ENV),
            start_beat("hooks-beat", broker=redis.url),
        ]
        now = timezone.now()
        brands = BrandFactory.create_batch(BRANDS)
        campaigns = [
            c.pk
            for brand in brands
            for c in CampaignFactory.create_batch(
                CAMPAIGNS_PER_BRAND, brand=brand, evaluated_at=now
            )
        ]
        began = time.monotonic()
        # Down: nothing listens. Half the campaigns switched off.
        toggle(campaigns[: len(campaigns) // 2], enabled=False)
        time.sleep(PHASE_SECONDS)
        with answering_500(port):  # every delivery fails
            toggle(campaigns[len(campaigns) // 2 :], enabled=False)
            time.sleep(PHASE_SECONDS)
        with hanging(port):  # every delivery times out
            toggle(campaigns, enabled=True)
            time.sleep(PHASE_SECONDS)
        down = time.monotonic() - began
        undelivered = WebhookDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).count()
        store_path = tmp_path / "receiver.sqlite3"
        with reference_receiver(port, store_path, secret):
            back = time.monotonic()
            # Kill the worker that is delivering, mid-run: its lease lapses and another
            # worker takes the endpoint over.
            workers = started[:2]
            wait_until(
                lambda: (
                    delivered() > 100
                    and WebhookEndpoint.objects.filter(leased_until__isnull=False).exists()
                    and any(w.running() for w in workers)
                ),
                "deliveries flowing again",
                120,
            )
            victims = [w for w in workers if w.running()]
            left_at_kill = WebhookDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).count()
            for victim in victims:
                victim.stop()
            if len(victims) == len(workers):
                started.append(start_worker("hooks-c", broker=redis.url, env=WORKER_ENV))
            wait_until(
                lambda: (
                    not WebhookDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()
                ),
                "every delivery made",
                600,
            )
            drained = time.monotonic() - back
            time.sleep(1)  # the receiver's last answer is written before its 200
        store = Store(str(store_path))

    events = list(Event.objects.order_by("pk").values("event_id", "stream", "sequence"))
    changes = Event.objects.filter(
        type__in=["campaign.paused", "campaign.resumed", "campaign.reasons_changed"]
    ).count()
    assert changes >= 500, changes
    assert victims, "no worker was delivering when the kill came"
    assert left_at_kill > 0
    last = dict(
        Event.objects.values("stream").annotate(m=Max("sequence")).values_list("stream", "m")
    )
    received: set[str] = set()
    for stream, top in last.items():
        applied = store.applied(stream)
        assert [e.sequence for e in applied] == list(range(1, top + 1)), stream
        assert not store.held(stream), stream
        received |= {e.id for e in applied}
    assert received == {e["event_id"] for e in events}
    # Each id at least once: the deliveries all succeeded; the receiver saw each once.
    key = make_api_key()  # all brands
    assert feed_ids(Client(), key) == received
    attempts = sum(WebhookDelivery.objects.values_list("attempts", flat=True))
    # The test process's own hand-overs went to the default broker, where no worker of
    # this scenario listens (Beat's dispatcher on the private Redis did the work).
    with suppress(Exception):
        celery_app.control.purge()
    report(
        f"{len(events)} events ({changes} state changes) over {Brand.objects.count()} brands; "
        f"receiver down {down:.0f} s ({undelivered} deliveries waiting); all delivered "
        f"{drained:.1f} s after it came back, {len(victims)} delivering worker(s) "
        f"killed with {left_at_kill} deliveries to go; {attempts} attempts"
    )
