"""Budget alerts at 50 %, 80 % and 100 %, once per threshold per period (issue 5)."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from ads.models import Brand, BudgetAlert, SpendEvent
from ads.services import record_spend, refresh_campaign_states, save_brand
from tests.conftest import NOW
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign_id() -> int:
    campaign = CampaignFactory.create(
        brand__name="Acme",
        brand__daily_budget=Decimal(100),
        brand__monthly_budget=Decimal(10000),
        brand__contact_email="ops@acme.example",
    )
    return campaign.pk


def alerts() -> list[tuple[str, int, str]]:
    rows = BudgetAlert.objects.order_by("created_at", "budget_kind", "threshold")
    return [(a.budget_kind, a.threshold, str(a.period)) for a in rows]


def test_each_threshold_alerts_once_when_crossed_and_mails_the_contact(
    campaign_id: int, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        for amount in ["40", "15", "30", "5", "10"]:  # 40, 55, 85, 90, 100 %
            record_spend(campaign_id, amount, at=NOW)

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
    assert "has spent 100.00 of its daily budget of 100.00" in mail.outbox[2].body
    assert "paused until the budget resets" in mail.outbox[2].body


def crossings() -> list[tuple[int, str]]:
    """(threshold, budget) of each daily alert, oldest first."""
    rows = BudgetAlert.objects.filter(budget_kind="daily").order_by("created_at", "pk")
    return [(a.threshold, str(a.budget)) for a in rows]


def set_daily_budget(amount: str, at: datetime) -> None:
    brand = Brand.objects.get()
    brand.daily_budget = Decimal(amount)
    save_brand(brand, changed_fields=["daily_budget"], actor="alice", at=at)


def test_exhausted_again_after_a_raise_alerts_and_mails_again(
    campaign_id: int, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    Brand.objects.update(daily_budget=Decimal(200))
    with django_capture_on_commit_callbacks(execute=True):
        record_spend(campaign_id, "200", at=NOW)  # 50, 80 and 100 % of 200: paused
        set_daily_budget("500", NOW + timedelta(minutes=1))  # 40 % of 500: resumed
        record_spend(campaign_id, "300", at=NOW + timedelta(minutes=2))  # 100 % of 500

    assert crossings() == [
        (50, "200.00"), (80, "200.00"), (100, "200.00"),
        (50, "500.00"), (80, "500.00"), (100, "500.00"),
    ]  # fmt: skip
    assert mail.outbox[-1].subject == "Acme: 100 % of the daily budget spent"
    assert "has spent 500.00 of its daily budget of 500.00" in mail.outbox[-1].body
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
    with django_capture_on_commit_callbacks(execute=True):
        record_spend(campaign_id, "85", at=NOW)  # 50 and 80 % of 100
        record_spend(campaign_id, "5", at=NOW)  # still past 80 %: the same crossing
        set_daily_budget("200", NOW + timedelta(minutes=1))  # 45 % of 200
        set_daily_budget("100", NOW + timedelta(minutes=2))  # back to the 100 already told
        refresh_campaign_states(at=NOW + timedelta(minutes=3), actor="enforce_budget_limits")

    assert crossings() == [(50, "100.00"), (80, "100.00")]
    assert len(mail.outbox) == 2


def test_a_new_day_alerts_again(
    campaign_id: int, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        record_spend(campaign_id, "85", at=NOW)
        record_spend(campaign_id, "85", at=NOW + timedelta(days=1))

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
    assert mail.outbox == []  # not committed: mails go out only after the commit


def test_no_contact_means_logged_but_not_mailed(
    campaign_id: int,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    Brand.objects.update(contact_email="")

    with django_capture_on_commit_callbacks(execute=True):
        record_spend(campaign_id, "50", at=NOW)

    assert alerts() == [("daily", 50, "2026-11-27")]
    assert mail.outbox == []
    assert "budget alert: Acme reached 50% of its daily budget for 2026-11-27" in caplog.text


def test_a_failing_mail_server_neither_fails_nor_repeats_the_spend(
    campaign_id: int,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2

    with django_capture_on_commit_callbacks(execute=True):
        result = record_spend(campaign_id, "100", at=NOW)  # 50, 80 and 100 % at once

    assert result.created
    assert SpendEvent.objects.count() == 1
    assert caplog.text.count("budget alert mail to ops@acme.example failed") == 3
