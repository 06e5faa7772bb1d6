"""Budget alerts at 50 %, 80 % and 100 %, once per threshold per period (issue 5), and
their e-mail, sent by a worker after the spend commits (issue 13)."""

import base64
import json
import smtplib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.test import Client
from kombu.exceptions import OperationalError as KombuOperationalError
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from ad_budget_project.celery import app as celery_app
from ads import tasks
from ads.api_keys import issue_key
from ads.models import ApiKey, Brand, BudgetAlert
from ads.services import record_spend, refresh_campaign_states, save_brand
from tests.conftest import NOW
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


class RecipientRefusedBackend(BaseEmailBackend):
    """A mail server that refuses every recipient (a 550: it would refuse again)."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        recipients = [r for m in email_messages for r in m.recipients()]
        raise smtplib.SMTPRecipientsRefused(dict.fromkeys(recipients, (550, b"no such mailbox")))


@pytest.fixture
def campaign_id() -> int:
    campaign = CampaignFactory.create(
        brand__name="Acme",
        brand__daily_budget=Decimal(100),
        brand__monthly_budget=Decimal(10000),
        brand__contact_email="ops@acme.example",
    )
    return campaign.pk


def mail_alerts() -> None:
    """What a worker does with the mails queued after a commit: each alert's task, run
    here directly."""
    for alert in BudgetAlert.objects.exclude(emailed_to="").order_by("pk"):
        tasks.send_budget_alert_mail(
            alert.brand_id, alert.budget_kind, alert.threshold, str(alert.period), str(alert.budget)
        )


def alerts() -> list[tuple[str, int, str]]:
    rows = BudgetAlert.objects.order_by("created_at", "budget_kind", "threshold")
    return [(a.budget_kind, a.threshold, str(a.period)) for a in rows]


def test_each_threshold_alerts_once_when_crossed_and_mails_the_contact(campaign_id: int) -> None:
    for amount in ["40", "15", "30", "5", "10"]:  # 40, 55, 85, 90, 100 %
        record_spend(campaign_id, amount, at=NOW)
    mail_alerts()

    assert alerts() == [
        ("daily", 50, "2026-11-27"),
        ("daily", 80, "2026-11-27"),
        ("daily", 100, "2026-11-27"),
    ]
    assert [m.subject for m in mail.outbox] == [
        "Acme: 50 % of the daily budget spent",
        "Acme: 80 % of the daily budget spent",
        "Acme: 100 % of the daily budget spent",
    ]
    assert mail.outbox[2].to == ["ops@acme.example"]
    assert "has spent €100.00 of its daily budget of €100.00" in mail.outbox[2].body
    assert "paused until the budget resets" in mail.outbox[2].body


@pytest.mark.parametrize(
    ("currency", "budget", "spend", "shown"),
    [
        ("JPY", "12000", "12000", "has spent ¥12,000 of its daily budget of ¥12,000"),
        ("KWD", "10.500", "10.500", "has spent KWD10.500 of its daily budget of KWD10.500"),
    ],
)
def test_alert_mails_and_logs_read_in_the_brands_currency(
    caplog: pytest.LogCaptureFixture, currency: str, budget: str, spend: str, shown: str
) -> None:
    campaign = CampaignFactory.create(
        brand__name="Far",
        brand__currency=currency,
        brand__daily_budget=Decimal(budget),
        brand__monthly_budget=Decimal(budget) * 30,
        brand__contact_email="ops@far.example",
    )
    record_spend(campaign.pk, spend, at=NOW)
    mail_alerts()

    assert shown in mail.outbox[-1].body
    amount = shown.split("spent ")[1].split(" of")[0]
    assert f"Far reached 100% of its daily budget for 2026-11-27 ({amount} of {amount})" in (
        caplog.text
    )


def crossings() -> list[tuple[int, str]]:
    """(threshold, budget) of each daily alert, oldest first."""
    rows = BudgetAlert.objects.filter(budget_kind="daily").order_by("created_at", "pk")
    return [(a.threshold, str(a.budget)) for a in rows]


def set_daily_budget(amount: str, at: datetime) -> None:
    brand = Brand.objects.get()
    brand.daily_budget = Decimal(amount)
    save_brand(brand, changed_fields=["daily_budget"], actor="alice", at=at)


def test_exhausted_again_after_a_raise_alerts_and_mails_again(campaign_id: int) -> None:
    Brand.objects.update(daily_budget=Decimal(200))
    record_spend(campaign_id, "200", at=NOW)  # 50, 80 and 100 % of 200: paused
    set_daily_budget("500", NOW + timedelta(minutes=1))  # 40 % of 500: resumed
    record_spend(campaign_id, "300", at=NOW + timedelta(minutes=2))  # 100 % of 500
    mail_alerts()

    assert crossings() == [
        (50, "200.00"), (80, "200.00"), (100, "200.00"),
        (50, "500.00"), (80, "500.00"), (100, "500.00"),
    ]  # fmt: skip
    assert mail.outbox[-1].subject == "Acme: 100 % of the daily budget spent"
    assert "has spent €500.00 of its daily budget of €500.00" in mail.outbox[-1].body
    assert len(mail.outbox) == 6


def test_a_budget_lowered_under_the_spend_alerts_for_the_new_budget(campaign_id: int) -> None:
    record_spend(campaign_id, "60", at=NOW)  # 60 % of 100

    set_daily_budget("70", NOW + timedelta(minutes=1))  # 86 % of 70
    set_daily_budget("50", NOW + timedelta(minutes=2))  # 120 % of 50: paused

    assert crossings() == [
        (50, "100.00"),
        (50, "70.00"), (80, "70.00"),
        (50, "50.00"), (80, "50.00"), (100, "50.00"),
    ]  # fmt: skip


def test_the_same_crossing_alerts_once_however_often_it_is_evaluated(
    campaign_id: int, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        record_spend(campaign_id, "85", at=NOW)  # 50 and 80 % of 100
        record_spend(campaign_id, "5", at=NOW)  # still past 80 %: the same crossing
        set_daily_budget("200", NOW + timedelta(minutes=1))  # 45 % of 200
        set_daily_budget("100", NOW + timedelta(minutes=2))  # back to the 100 already told
        refresh_campaign_states(at=NOW + timedelta(minutes=3), actor="enforce_budget_limits")

    assert crossings() == [(50, "100.00"), (80, "100.00")]
    assert len(callbacks) == 1  # one hand-over, after the first spend's commit


def test_a_new_day_alerts_again(campaign_id: int) -> None:
    record_spend(campaign_id, "85", at=NOW)
    record_spend(campaign_id, "85", at=NOW + timedelta(days=1))
    mail_alerts()

    assert alerts() == [
        ("daily", 50, "2026-11-27"),
        ("daily", 80, "2026-11-27"),
        ("daily", 50, "2026-11-28"),
        ("daily", 80, "2026-11-28"),
    ]
    assert len(mail.outbox) == 4


def test_monthly_budget_alerts_by_local_month(campaign_id: int) -> None:
    Brand.objects.update(monthly_budget=Decimal(150), daily_budget=Decimal(1000))

    record_spend(campaign_id, "80", at=NOW)
    record_spend(campaign_id, "50", at=NOW + timedelta(days=1))

    assert alerts() == [("monthly", 50, "2026-11-01"), ("monthly", 80, "2026-11-01")]
    assert mail.outbox == []  # mails are a worker's job, queued after the commit


def test_no_contact_means_logged_but_not_mailed(
    campaign_id: int,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    Brand.objects.update(contact_email="")

    with django_capture_on_commit_callbacks() as callbacks:
        record_spend(campaign_id, "50", at=NOW)

    assert alerts() == [("daily", 50, "2026-11-27")]
    assert callbacks == []  # nothing to queue
    assert (
        "budget alert: Acme reached 50% of its daily budget for 2026-11-27 (€50.00 of €100.00)"
        in caplog.text
    )


def test_the_mail_task_sends_the_alert_to_the_brands_contact(campaign_id: int) -> None:
    record_spend(campaign_id, "100", at=NOW)  # 50, 80 and 100 %
    alert = BudgetAlert.objects.get(threshold=100)

    tasks.send_budget_alert_mail(alert.brand_id, "daily", 100, "2026-11-27", "100.00")

    [sent] = mail.outbox
    assert sent.to == ["ops@acme.example"]
    assert sent.from_email == settings.DEFAULT_FROM_EMAIL
    assert sent.subject == "Acme: 100 % of the daily budget spent"
    assert sent.body == (
        "Acme has spent €100.00 of its daily budget of €100.00 for 2026-11-27.\n"
        "Its campaigns are paused until the budget resets or is raised.\n"
    )


def queued_tasks() -> list[tuple[str, dict[str, object]]]:
    """Take every message off the broker's default queue: (task name, its kwargs)."""
    broker = redis.Redis.from_url(celery_app.conf.broker_url)
    raw_messages = broker.lrange("celery", 0, -1)
    broker.delete("celery")
    messages = []
    for raw in reversed(raw_messages):  # pushed on the left, taken from the right
        message = json.loads(raw)
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        messages.append((message["headers"]["task"], kwargs))
    return messages


def test_the_mail_task_is_queued_only_after_the_spend_commits(
    campaign_id: int,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    redis_broker: str,
) -> None:
    celery_app.control.purge()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        record_spend(campaign_id, "50", at=NOW)
        assert queued_tasks() == []  # not before the commit

    assert len(callbacks) == 1
    brand_id = Brand.objects.get().pk
    assert queued_tasks() == [
        (
            "ads.send_budget_alert_mail",
            {
                "brand_id": brand_id,
                "budget_kind": "daily",
                "threshold": 50,
                "period": "2026-11-27",
                "budget": "100.00",
            },
        )
    ]


def test_a_spend_whose_alert_mail_cannot_be_queued_is_recorded_and_says_so(
    campaign_id: int,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broker_down(*args: object, **kwargs: object) -> None:
        raise KombuOperationalError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "send_task", broker_down)  # the broker is outside

    with django_capture_on_commit_callbacks(execute=True):
        result = record_spend(campaign_id, "85", at=NOW)  # 50 and 80 %

    brand = Brand.objects.get().pk
    assert result.created
    assert caplog.text.count("budget alert mail(s) not queued") == 1
    assert f"brand {brand} 50% of its daily budget for 2026-11-27, brand {brand} 80%" in caplog.text
    assert BudgetAlert.objects.count() == 2


def test_a_mail_server_that_does_not_answer_is_tried_again_later(
    campaign_id: int, settings: Settings, silent_mail_server: int
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = (
        "127.0.0.1", silent_mail_server, 0.2,
    )  # fmt: skip
    record_spend(campaign_id, "50", at=NOW)
    brand_id = Brand.objects.get().pk

    # Called directly, a task that would be retried raises its error instead.
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        tasks.send_budget_alert_mail(brand_id, "daily", 50, "2026-11-27", "100.00")

    retried = tasks.send_budget_alert_mail.autoretry_for  # type: ignore[attr-defined]  # not in celery-types
    assert smtplib.SMTPServerDisconnected in retried
    assert tasks.send_budget_alert_mail.max_retries == 5


def test_a_mail_refused_for_good_is_logged_and_not_tried_again(
    campaign_id: int, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 1  # nothing listens: refused
    record_spend(campaign_id, "50", at=NOW)
    brand_id = Brand.objects.get().pk
    settings.EMAIL_BACKEND = "tests.test_alerts.RecipientRefusedBackend"

    tasks.send_budget_alert_mail(brand_id, "daily", 50, "2026-11-27", "100.00")  # returns

    assert "budget alert mail to ops@acme.example failed (SMTPRecipientsRefused" in caplog.text


@pytest.fixture
def silent_mail_server() -> Iterator[int]:
    """A mail server on loopback that accepts each connection and never says a word (no
    greeting): an SMTP client waits on it until its timeout. Yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    connections: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with suppress(TimeoutError):
                connections.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in connections:
            connection.close()
        server.close()


@pytest.mark.django_db(transaction=True)  # commits for real, so after-commit work runs
def test_an_api_spend_crossing_thresholds_answers_at_once_while_the_mail_server_hangs(
    client: Client, settings: Settings, silent_mail_server: int, redis_broker: str
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", silent_mail_server
    settings.EMAIL_TIMEOUT = 10  # the default: each mail could wait this long
    campaign = CampaignFactory.create(
        brand__daily_budget=Decimal(100), brand__contact_email="ops@acme.example"
    )
    api_key = ApiKey(name="feed", all_brands=True)
    secret = issue_key(api_key)
    api_key.save()
    celery_app.control.purge()

    started = time.monotonic()
    response = client.post(
        "/api/v1/spend",
        {"campaign_id": campaign.pk, "amount": "100.00", "idempotency_key": "hang-1"},
        content_type="application/json",
        headers={"X-API-Key": secret},
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed < 1
    assert BudgetAlert.objects.count() == 3  # 50, 80 and 100 % at once
    assert celery_app.control.purge() == 3  # each mail waits for a worker
