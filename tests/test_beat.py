"""Beat's database scheduler: the defaults are stored once and due at the right times."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from ad_budget_project.celery import app
from ads.beat import DefaultsOnceScheduler
from tests.factories import UserFactory

# The scheduler manages its own connections, so it gets a real transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def start_beat() -> DefaultsOnceScheduler:
    return DefaultsOnceScheduler(app=app)


def test_beat_stores_the_configured_periodic_tasks_in_the_database() -> None:
    start_beat()

    stored = {
        task.name: (
            task.task,
            str(task.crontab or task.interval).split(" (")[0],
            task.expire_seconds,
        )
        for task in PeriodicTask.objects.all()
    }
    assert stored == {
        "dispatch-webhooks": ("ads.dispatch_webhooks", "every 10 seconds", 8),
        "enforce-budget-limits": ("ads.enforce_budget_limits", "*/5 * * * *", 240),
        "enforce-dayparting": ("ads.enforce_dayparting", "0,15,30,45 * * * *", 840),
        "reset-daily-budgets": ("ads.reset_daily_budgets", "0,15,30,45 * * * *", 840),
        "reset-monthly-budgets": ("ads.reset_monthly_budgets", "0,15,30,45 * * * *", 840),
        "reconcile-spend-counters": ("ads.reconcile_spend_counters", "30 3 * * *", 3600),
        "requeue-spends": ("ads.requeue_spends", "* * * * *", 50),
    }
    assert set(stored) == set(settings.CELERY_BEAT_SCHEDULE)
    assert {str(c.timezone) for c in CrontabSchedule.objects.all()} == {"UTC"}


@pytest.mark.parametrize(
    ("name", "last_run", "not_yet", "due"),
    [
        ("enforce-budget-limits", "27T12:00:00", "27T12:04:59", "27T12:05:00"),
        ("enforce-dayparting", "27T12:00:00", "27T12:14:59", "27T12:15:00"),
        ("reset-daily-budgets", "27T23:45:00", "27T23:59:59", "28T00:00:00"),
        ("reconcile-spend-counters", "27T03:30:00", "28T03:29:59", "28T03:30:00"),
        ("dispatch-webhooks", "27T12:00:00", "27T12:00:09", "27T12:00:10"),
    ],
)
def test_periodic_tasks_are_due_at_the_right_times(
    name: str, last_run: str, not_yet: str, due: str, time_machine: time_machine.TimeMachineFixture
) -> None:
    def moment(text: str) -> datetime:
        return datetime.fromisoformat(f"2026-11-{text}").replace(tzinfo=UTC)

    start_beat()
    entry = DefaultsOnceScheduler.Entry(PeriodicTask.objects.get(name=name), app=app)
    entry.last_run_at = moment(last_run)

    time_machine.move_to(moment(not_yet), tick=False)
    assert not entry.is_due().is_due
    time_machine.move_to(moment(due), tick=False)
    assert entry.is_due().is_due


def test_a_schedule_changed_in_the_admin_survives_a_beat_restart() -> None:
    start_beat()
    every_ten = CrontabSchedule.objects.create(minute="*/10", timezone="UTC")
    PeriodicTask.objects.filter(name="enforce-budget-limits").update(crontab=every_ten)

    start_beat()

    task = PeriodicTask.objects.get(name="enforce-budget-limits")
    assert task.crontab_id == every_ten.pk


def test_a_deleted_default_comes_back_at_the_next_beat_start() -> None:
    start_beat()
    PeriodicTask.objects.filter(name="reconcile-spend-counters").delete()

    start_beat()

    assert PeriodicTask.objects.filter(name="reconcile-spend-counters").exists()


def test_periodic_tasks_in_the_admin_are_for_superusers_only(
    client: Client, admin_client: Client
) -> None:
    start_beat()
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    client.force_login(UserFactory.create(groups=["Budget managers"]))

    assert admin_client.get(url).status_code == 200
    assert client.get(url).status_code == 403
