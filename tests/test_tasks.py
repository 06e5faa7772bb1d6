"""Periodic tasks and resets, called directly under frozen time (SPEC 7, 8)."""

import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks

from ads import tasks
from ads.models import (
    Brand,
    Campaign,
    CampaignStatusChange,
    PendingSpend,
    SettingChange,
    SpendEvent,
)
from ads.rules import PauseReason
from ads.services import record_spend, refresh_campaign_states, save_brand
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def local(zone: str, text: str) -> datetime:
    """A wall-clock time in `zone`, as an aware datetime (fold=0)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def paused_for_the_day(zone: str, spent_at: datetime) -> Campaign:
    campaign = CampaignFactory.create(brand__timezone=zone, brand__daily_budget=Decimal("10"))
    record_spend(campaign.pk, "10", at=spent_at)
    campaign.refresh_from_db()
    assert campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)
    return campaign


def snapshot() -> tuple[object, ...]:
    return (
        list(Brand.objects.order_by("pk").values_list(
            "current_daily_spend", "current_monthly_spend", "counters_day", "counters_month"
        )),
        list(Campaign.objects.order_by("pk").values_list(
            "is_active", "pause_reasons", "daily_spend"
        )),
        CampaignStatusChange.objects.count(),
        SettingChange.objects.count(),
    )  # fmt: skip


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Tokyo"])
def test_daily_reset_happens_at_local_midnight(
    zone: str, time_machine: time_machine.TimeMachineFixture
) -> None:
    campaign = paused_for_the_day(zone, local(zone, "2026-11-27T18:00"))

    time_machine.move_to(local(zone, "2026-11-27T23:59:59"), tick=False)
    tasks.reset_daily_budgets()
    assert Brand.objects.get().current_daily_spend == Decimal("10")

    time_machine.move_to(local(zone, "2026-11-28T00:00"), tick=False)
    tasks.reset_daily_budgets()

    brand = Brand.objects.get()
    campaign.refresh_from_db()
    assert (brand.current_daily_spend, brand.counters_day) == (Decimal(0), date(2026, 11, 28))
    assert brand.current_monthly_spend == Decimal("10")
    assert campaign.is_active
    change = CampaignStatusChange.objects.latest("pk")
    assert (change.actor, change.reason) == ("reset_daily_budgets", "resumed (-brand_daily_budget)")


def test_reset_running_twice_changes_nothing_the_second_time(
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    paused_for_the_day("Asia/Tokyo", local("Asia/Tokyo", "2026-11-27T18:00"))
    time_machine.move_to(local("Asia/Tokyo", "2026-11-28T00:15"), tick=False)
    tasks.reset_daily_budgets()
    after_first = snapshot()

    tasks.reset_daily_budgets()

    assert snapshot() == after_first


def test_reset_missed_while_beat_was_down_is_caught_up_by_the_next_run(
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    campaign = paused_for_the_day("UTC", local("UTC", "2026-11-27T22:00"))
    time_machine.move_to(local("UTC", "2026-11-27T23:00"), tick=False)
    tasks.reset_daily_budgets()  # the last run before Beat went down

    time_machine.move_to(local("UTC", "2026-11-28T02:00"), tick=False)  # first run after
    tasks.reset_daily_budgets()

    campaign.refresh_from_db()
    assert Brand.objects.get().current_daily_spend == Decimal(0)
    assert campaign.is_active


def test_spend_just_after_local_midnight_before_any_reset_lands_in_the_new_day() -> None:
    zone = "America/Los_Angeles"
    campaign = paused_for_the_day(zone, local(zone, "2026-11-27T20:00"))

    result = record_spend(campaign.pk, "3", at=local(zone, "2026-11-28T00:00:30"))

    assert result.brand.daily_spend == Decimal("3")
    assert result.campaign.is_active
    assert Brand.objects.get().current_monthly_spend == Decimal("13")


@pytest.mark.parametrize(
    ("last_day", "first_day"),
    [("2027-01-31", "2027-02-01"), ("2028-02-29", "2028-03-01"), ("2026-12-31", "2027-01-01")],
)
def test_monthly_reset_on_the_first(
    last_day: str, first_day: str, time_machine: time_machine.TimeMachineFixture
) -> None:
    campaign = CampaignFactory.create(
        brand__timezone="Asia/Tokyo", brand__monthly_budget=Decimal(5)
    )
    record_spend(campaign.pk, "5", at=local("Asia/Tokyo", f"{last_day}T23:00"))
    campaign.refresh_from_db()
    assert PauseReason.BRAND_MONTHLY_BUDGET in campaign.pause_reasons

    time_machine.move_to(local("Asia/Tokyo", f"{first_day}T00:00"), tick=False)
    tasks.reset_monthly_budgets()

    brand = Brand.objects.get()
    campaign.refresh_from_db()
    assert brand.current_monthly_spend == Decimal(0)
    assert str(brand.counters_month) == first_day
    assert campaign.is_active
    assert CampaignStatusChange.objects.latest("pk").actor == "reset_monthly_budgets"


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/New_York", "2026-03-08"),  # 23 hours
        ("America/New_York", "2026-11-01"),  # 25 hours
        ("America/Santiago", "2026-09-06"),  # midnight skipped: the day starts at 01:00
        ("America/Havana", "2026-11-01"),  # 01:00 falls back to 00:00: midnight ... twice
    ],
)
def test_beat_every_quarter_hour_across_a_dst_day_resets_once_per_local_date(
    zone: str, day: str, time_machine: time_machine.TimeMachineFixture
) -> None:
    tz = ZoneInfo(zone)
    the_day = date.fromisoformat(day)
    start = datetime.combine(the_day - timedelta(days=1), time(12), tz).astimezone(UTC)
    campaign = CampaignFactory.create(brand__timezone=zone)
    record_spend(campaign.pk, "1", at=start)
    resets: list[date] = []

    instant = start
    while instant < start + timedelta(days=2):
        time_machine.move_to(instant, tick=False)
        before = Brand.objects.get().counters_day
        tasks.reset_daily_budgets()
        after = Brand.objects.get().counters_day
        if after != before:
            resets.append(after)  # type: ignore[arg-type]  # counters_day is set after a reset
            assert instant.astimezone(tz).date() == after
        instant += timedelta(minutes=15)

    assert resets == [the_day, the_day + timedelta(days=1)]


def test_spend_on_a_25_hour_day_all_counts_in_that_day() -> None:
    zone = "America/New_York"
    campaign = CampaignFactory.create(brand__timezone=zone, brand__daily_budget=Decimal(1000))
    record_spend(campaign.pk, "1", at=local(zone, "2026-11-01T00:30"))
    record_spend(campaign.pk, "2", at=local(zone, "2026-11-01T01:30").replace(fold=1))
    record_spend(campaign.pk, "4", at=local(zone, "2026-11-01T23:59"))

    assert Brand.objects.get().current_daily_spend == Decimal(7)


TASKS: list[Callable[[], None]] = [
    tasks.enforce_budget_limits,
    tasks.enforce_dayparting,
    tasks.reset_daily_budgets,
    tasks.reset_monthly_budgets,
    tasks.reconcile_spend_counters,
]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_any_task_delivered_twice_leaves_the_same_state_as_once(
    task: Callable[[], None], time_machine: time_machine.TimeMachineFixture
) -> None:
    paused_for_the_day("Asia/Tokyo", local("Asia/Tokyo", "2026-11-27T18:00"))
    Brand.objects.update(monthly_budget=Decimal(0))  # something for enforcement to do
    time_machine.move_to(local("Asia/Tokyo", "2026-12-01T00:00"), tick=False)
    task()
    once = snapshot()

    task()

    assert snapshot() == once


def test_reconcile_reports_and_repairs_a_counter_edited_in_the_database(
    time_machine: time_machine.TimeMachineFixture, caplog: pytest.LogCaptureFixture
) -> None:
    now = local("UTC", "2026-11-27T12:00")
    time_machine.move_to(now, tick=False)
    campaign = CampaignFactory.create(brand__daily_budget=Decimal(100))
    record_spend(campaign.pk, "30", at=now)
    with connection.cursor() as cursor:  # tampering behind the application's back
        cursor.execute("UPDATE ads_brand SET current_daily_spend = 100000000")  # 100.00
        cursor.execute("UPDATE ads_campaign SET daily_spend = 0")
    refresh_campaign_states(at=now, actor="enforce_budget_limits")
    assert not Campaign.objects.get().is_active  # the tampered counter paused it

    with caplog.at_level(logging.WARNING, logger="ads.services"):
        tasks.reconcile_spend_counters()

    brand = Brand.objects.get()
    assert brand.current_daily_spend == Decimal(30)
    assert Campaign.objects.get().daily_spend == Decimal(30)
    assert Campaign.objects.get().is_active
    repairs = SettingChange.objects.filter(actor="reconcile_spend_counters").order_by("field")
    assert [(r.field, r.object_repr, r.old_value, r.new_value) for r in repairs] == [
        (
            "current_daily_spend",
            f"{brand.name}: current_daily_spend for 2026-11-27",
            "100.00",
            "30.00",
        ),
        (
            "daily_spend",
            f"{Campaign.objects.get().name}: daily_spend for 2026-11-27",
            "0.00",
            "30.00",
        ),
    ]
    assert "delta €70.00" in caplog.text


def test_record_spend_task_records_with_the_task_source() -> None:
    campaign = CampaignFactory.create()

    tasks.record_spend(campaign.pk, "2.50", idempotency_key="feed-1")
    tasks.record_spend(campaign.pk, "2.50", idempotency_key="feed-1")

    event = SpendEvent.objects.get()
    assert (event.source, event.amount) == ("task", Decimal("2.50"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"campaign_id": 1, "amount": 0.1, "idempotency_key": "k"}, "amount: must be a decimal"),
        ({"campaign_id": "1", "amount": "NaN", "idempotency_key": "k"}, "not a finite amount"),
        ({"campaign_id": True, "amount": "1", "idempotency_key": "k"}, "is not a campaign id"),
        ({"campaign_id": 999, "amount": "1", "idempotency_key": "k"}, "no campaign with id 999"),
        ({"campaign_id": 1, "amount": "1"}, "idempotency_key: required for a queued spend"),
        (
            {"campaign_id": 1, "amount": "1", "idempotency_key": "k", "occurred_at": "soon"},
            "occurred_at: 'soon' is not an ISO-8601",
        ),
    ],
)
def test_record_spend_task_rejects_bad_input_logs_it_and_writes_nothing(
    arguments: dict[str, object], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    CampaignFactory.create(pk=1)

    tasks.record_spend(**arguments)  # returns: a rejected task is not retried

    assert message in caplog.text
    assert "not retried" in caplog.text
    assert not SpendEvent.objects.exists()


def test_enqueue_spend_validates_now_and_sends_only_after_commit(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    campaign = CampaignFactory.create()

    with django_capture_on_commit_callbacks() as callbacks:
        key = tasks.enqueue_spend(campaign.pk, "1.50")

    assert len(callbacks) == 1
    assert len(key) == 32
    with pytest.raises(ValidationError, match="must be greater than zero"):
        tasks.enqueue_spend(campaign.pk, "-1")
    with pytest.raises(ValidationError, match="no campaign with id 999999"):
        tasks.enqueue_spend(999_999, "1")


def test_a_queued_spend_is_dated_when_queued_not_when_a_worker_runs_it(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    campaign = CampaignFactory.create()
    time_machine.move_to(local("UTC", "2026-11-27T23:59"), tick=False)
    with django_capture_on_commit_callbacks() as callbacks:
        tasks.enqueue_spend(campaign.pk, "10")
    queued = callbacks[0].args[0]  # type: ignore[attr-defined]  # a functools.partial

    time_machine.move_to(local("UTC", "2026-11-28T00:03"), tick=False)
    tasks.record_spend(**queued)

    assert queued["occurred_at"] == "2026-11-27T23:59:00+00:00"
    assert Brand.objects.get().current_daily_spend == 0  # it belongs to yesterday


def test_a_queued_spend_stays_in_the_outbox_until_a_worker_records_it(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    campaign = CampaignFactory.create()
    with django_capture_on_commit_callbacks() as callbacks:
        key = tasks.enqueue_spend(campaign.pk, "2.50", idempotency_key="outbox-1")
    pending = PendingSpend.objects.get()
    assert (pending.idempotency_key, pending.sends) == (key, 1)

    tasks.record_spend(**callbacks[0].args[0])  # type: ignore[attr-defined]  # a partial

    assert not PendingSpend.objects.exists()
    assert SpendEvent.objects.get().amount == Decimal("2.50")


def test_a_queued_spend_rolled_back_with_its_transaction_leaves_nothing_to_send(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    campaign = CampaignFactory.create()
    with (
        django_capture_on_commit_callbacks() as callbacks,
        suppress(RuntimeError),
        transaction.atomic(),
    ):
        tasks.enqueue_spend(campaign.pk, "2.50")
        raise RuntimeError("the caller's transaction fails")

    assert callbacks == []
    assert not PendingSpend.objects.exists()


def test_a_rejected_queued_spend_leaves_the_outbox(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    campaign = CampaignFactory.create()
    with django_capture_on_commit_callbacks():
        tasks.enqueue_spend(campaign.pk, "2.50", idempotency_key="outbox-2")
    record_spend(campaign.pk, "9.99", idempotency_key="outbox-2")  # the key, another amount

    tasks.record_spend(**PendingSpend.objects.get().arguments)

    assert not PendingSpend.objects.exists()  # sending it again could only conflict again
    assert SpendEvent.objects.get().amount == Decimal("9.99")


def test_record_spend_task_records_a_spend_stating_the_brands_currency() -> None:
    campaign = CampaignFactory.create(brand__currency="JPY")

    tasks.record_spend(campaign.pk, "1200", idempotency_key="feed-1", currency="jpy")

    assert SpendEvent.objects.get().amount == Decimal(1200)


def test_record_spend_task_refuses_another_currency_logs_both_and_writes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    campaign = CampaignFactory.create(brand__name="Tokyo", brand__currency="JPY")
    before = snapshot()

    tasks.record_spend(campaign.pk, "12.50", idempotency_key="feed-1", currency="EUR")

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "record_spend rejected, not retried: currency: the spend is in EUR but brand 'Tokyo' "
        "pays in JPY; nothing is converted, so send the amount in JPY "
        f"(campaign_id={campaign.pk} amount='12.50' key='feed-1' currency='EUR')"
    ]
    assert not SpendEvent.objects.exists()
    assert snapshot() == before


def test_a_queued_spend_carries_its_currency_only_when_stated(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    campaign = CampaignFactory.create()
    with django_capture_on_commit_callbacks() as callbacks:
        tasks.enqueue_spend(campaign.pk, "2.50", idempotency_key="stated", currency="eur")
        tasks.enqueue_spend(campaign.pk, "2.50", idempotency_key="not-stated")

    sent = [callback.args[0] for callback in callbacks]  # type: ignore[attr-defined]  # partials
    kept = [p.arguments for p in PendingSpend.objects.order_by("idempotency_key")]
    assert [arguments.get("currency") for arguments in sent] == ["EUR", None]
    # A message without it is one that workers of the release before currencies still take.
    assert "currency" not in sent[1]
    assert kept == [sent[1], sent[0]]  # what requeue_spends sends again: the same


def test_a_queued_spend_in_the_currency_its_brand_had_is_refused_after_a_change(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A brand without spend may change currency while a spend is queued: the worker
    checks the stated currency again, under the brand's lock, and never counts euros as
    yen. The refused spend leaves the outbox: sending it again could only be refused."""
    campaign = CampaignFactory.create(brand__name="Acme", brand__daily_budget=Decimal(100))
    with django_capture_on_commit_callbacks():
        tasks.enqueue_spend(campaign.pk, "12.50", idempotency_key="q-1", currency="EUR")
    brand = Brand.objects.get()
    brand.currency = "JPY"
    save_brand(brand, changed_fields=["currency"], actor="alice", at=timezone.now())
    before = snapshot()

    tasks.record_spend(**PendingSpend.objects.get().arguments)

    assert "currency: the spend is in EUR but brand 'Acme' pays in JPY" in caplog.text
    assert not SpendEvent.objects.exists()
    assert not PendingSpend.objects.exists()
    assert snapshot() == before


@pytest.fixture
def queued_at_noon(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    time_machine: time_machine.TimeMachineFixture,
) -> Campaign:
    """A campaign whose spend of 2.50 (key "outbox-3") was queued at noon and is in the
    outbox; no worker has run it."""
    campaign = CampaignFactory.create()
    time_machine.move_to(local("UTC", "2026-11-27T12:00"), tick=False)
    with django_capture_on_commit_callbacks():
        tasks.enqueue_spend(campaign.pk, "2.50", idempotency_key="outbox-3")
    return campaign


def test_requeue_only_clears_a_spend_recorded_by_a_worker_that_died_before_clearing_it(
    queued_at_noon: Campaign,
    time_machine: time_machine.TimeMachineFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record_spend(queued_at_noon.pk, "2.50", idempotency_key="outbox-3")
    time_machine.shift(timedelta(seconds=settings.SPEND_REQUEUE_AFTER - 1))
    tasks.requeue_spends()
    assert PendingSpend.objects.exists()  # not due yet: it may be on its way

    time_machine.shift(timedelta(seconds=1))
    with caplog.at_level(logging.INFO, logger="ads.tasks"):
        tasks.requeue_spends()

    assert not PendingSpend.objects.exists()
    assert "0 sent again, 1 already recorded and cleared" in caplog.text
    assert SpendEvent.objects.count() == 1


@pytest.mark.usefixtures("queued_at_noon")
def test_requeue_writes_no_line_when_it_has_nothing_to_do(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ads.tasks"):
        tasks.requeue_spends()  # runs every minute; this spend is not due yet

    assert caplog.records == []
    assert PendingSpend.objects.exists()
