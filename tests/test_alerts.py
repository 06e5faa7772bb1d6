"""Budget alerts at 50 %, 80 % and 100 %, once per threshold per period (issue 5)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from pytest_django import DjangoCaptureOnCommitCallbacks, Settings

from ads.models import Brand, BudgetAlert, SpendEvent
from ads.services import record_spend, save_brand
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


def test_crossing_80_percent_twice_in_one_day_alerts_once(
    campaign_id: int, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        record_spend(campaign_id, "85", at=NOW)
        brand = Brand.objects.get()
        brand.daily_budget = Decimal(200)  # back under 80 %
        save_brand(brand, changed_fields=["daily_budget"], actor="alice", at=NOW)
        record_spend(campaign_id, "80", at=NOW)  # 165 of 200: over 80 % again

    assert [a for a in alerts() if a[1] == 80] == [("daily", 80, "2026-11-27")]
    assert sum("80 %" in m.subject for m in mail.outbox) == 1


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
