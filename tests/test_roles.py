"""Scenario 12, tampering, and the roles of SPEC section 10 in one matrix.

A counter edited behind the application's back is reported, audited and repaired by
the reconcile task (SPEC 4, 7); the ledger refuses UPDATE in the database itself and
every write in the admin, superusers included; each role gets exactly the admin
rights SPEC 10 gives it, whatever page or button it tries.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import Group, User
from django.db import DatabaseError, connection, transaction
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from ads import tasks
from ads.models import (
    ApiKey,
    Brand,
    BudgetAlert,
    Campaign,
    CampaignStatusChange,
    Schedule,
    ScheduleWindow,
    SettingChange,
    SpendEvent,
)
from ads.money import to_micros
from ads.roles import sync_groups
from ads.rules import PauseReason
from ads.services import refresh_campaign_states, save_brand
from tests.conftest import NOW, admin_url, make_api_key, rows
from tests.factories import BrandFactory, CampaignFactory
from tests.invariants import assert_invariants, snapshot_ledger

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]

YESTERDAY = NOW - timedelta(days=1)  # Thursday 26 November: same month as NOW
TODAY, THIS_MONTH = "2026-11-27", "2026-11-01"
RECONCILE = "reconcile_spend_counters"


def tamper(owner: Brand | Campaign, counter: str, value: Decimal) -> None:
    """Set a counter in SQL, behind the application's back (stored as micros)."""
    table = connection.ops.quote_name(owner._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {connection.ops.quote_name(counter)} = %s WHERE id = %s",
            [to_micros(value), owner.pk],
        )


def owner_of(campaign: Campaign, owner: str) -> Brand | Campaign:
    return campaign if owner == "campaign" else campaign.brand


# --- (A) Tampering: counters ---------------------------------------------------------

# owner, counter, period, the ledger's value (see `search`), the value written in SQL
TAMPERED_COUNTERS = [
    pytest.param("brand", "current_daily_spend", TODAY, "30.00", "130.00", id="brand-day-up"),
    pytest.param("brand", "current_daily_spend", TODAY, "30.00", "10.00", id="brand-day-down"),
    pytest.param(
        "brand", "current_monthly_spend", THIS_MONTH, "50.00", "80.00", id="brand-month-up"
    ),
    pytest.param(
        "brand", "current_monthly_spend", THIS_MONTH, "50.00", "0.00", id="brand-month-down"
    ),
    pytest.param("campaign", "daily_spend", TODAY, "30.00", "45.50", id="campaign-day-up"),
    pytest.param("campaign", "daily_spend", TODAY, "30.00", "0.25", id="campaign-day-down"),
]


@pytest.mark.parametrize(("owner", "counter", "period", "truth", "tampered"), TAMPERED_COUNTERS)
def test_a_counter_edited_in_sql_is_logged_audited_and_repaired_by_reconcile(
    search: Campaign,
    caplog: pytest.LogCaptureFixture,
    owner: str,
    counter: str,
    period: str,
    truth: str,
    tampered: str,
) -> None:
    ledger = snapshot_ledger()
    target = owner_of(search, owner)
    tamper(target, counter, Decimal(tampered))

    with caplog.at_level(logging.WARNING, logger="ads"):
        tasks.reconcile_spend_counters()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"counter {counter} of {owner} {target.pk} ({target.name}) for {period} was {tampered}, "
        f"ledger says {truth} (delta {Decimal(tampered) - Decimal(truth)}): repaired"
    ]
    audit = SettingChange.objects.get(actor=RECONCILE)  # the untouched brand has none
    assert (audit.object_type, audit.object_id, audit.field) == (owner, target.pk, counter)
    assert (audit.old_value, audit.new_value) == (tampered, truth)
    assert audit.object_repr == f"{target.name}: {counter} for {period}"  # findable by name
    target.refresh_from_db()
    assert getattr(target, counter) == Decimal(truth)
    assert_invariants(at=NOW, before=ledger)


def test_a_ledger_row_deleted_in_sql_shows_up_as_drift_and_the_counters_follow_the_ledger(
    search: Campaign, caplog: pytest.LogCaptureFixture
) -> None:
    """The database owner can still DELETE (see migration 0003); reconcile notices."""
    today = SpendEvent.objects.filter(campaign=search).latest("occurred_at")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ads_spendevent WHERE id = %s", [today.pk])

    with caplog.at_level(logging.WARNING, logger="ads"):
        tasks.reconcile_spend_counters()

    assert f"counter current_daily_spend of brand {search.brand_id} (Acme)" in caplog.text
    assert f"(delta {today.amount:.2f})" in caplog.text
    assert SettingChange.objects.filter(actor=RECONCILE, field="current_daily_spend").exists()
    assert_invariants(at=NOW)


# owner, counter, a value above the budget (brand 100.00 / 3,000.00, campaign 50.00)
RAISED_COUNTERS = [
    ("brand", "current_daily_spend", "150", PauseReason.BRAND_DAILY_BUDGET),
    ("brand", "current_monthly_spend", "3500", PauseReason.BRAND_MONTHLY_BUDGET),
    ("campaign", "daily_spend", "75", PauseReason.CAMPAIGN_DAILY_BUDGET),
]


@pytest.mark.parametrize(("owner", "counter", "tampered", "reason"), RAISED_COUNTERS)
def test_a_campaign_paused_by_a_raised_counter_resumes_after_reconcile(
    search: Campaign, owner: str, counter: str, tampered: str, reason: PauseReason
) -> None:
    ledger = snapshot_ledger()
    tamper(owner_of(search, owner), counter, Decimal(tampered))
    tasks.enforce_budget_limits()  # enforcement believes the tampered counter
    search.refresh_from_db()
    assert (search.is_active, search.pause_reasons) == (False, (reason,))

    tasks.reconcile_spend_counters()

    search.refresh_from_db()
    assert search.is_active
    change = search.status_changes.latest("pk")
    assert (change.actor, change.reason) == (RECONCILE, f"resumed (-{reason})")
    assert_invariants(at=NOW, before=ledger)


# owner, counter, budget set to exactly the ledger's spend (exhausted), reason
LOWERED_COUNTERS = [
    ("brand", "current_daily_spend", "daily_budget", "30", PauseReason.BRAND_DAILY_BUDGET),
    ("brand", "current_monthly_spend", "monthly_budget", "50", PauseReason.BRAND_MONTHLY_BUDGET),
    ("campaign", "daily_spend", "daily_budget", "30", PauseReason.CAMPAIGN_DAILY_BUDGET),
]


@pytest.mark.parametrize(("owner", "counter", "budget", "spent", "reason"), LOWERED_COUNTERS)
def test_a_campaign_resumed_by_a_lowered_counter_is_paused_again_by_reconcile(
    search: Campaign, owner: str, counter: str, budget: str, spent: str, reason: PauseReason
) -> None:
    target = owner_of(search, owner)
    type(target)._default_manager.filter(pk=target.pk).update(**{budget: Decimal(spent)})
    tasks.enforce_budget_limits()
    search.refresh_from_db()
    assert search.pause_reasons == (reason,)  # rightly paused: the budget is spent
    ledger = snapshot_ledger()
    tamper(target, counter, Decimal(0))
    tasks.enforce_budget_limits()
    search.refresh_from_db()
    assert search.is_active  # money could now be spent past the budget

    tasks.reconcile_spend_counters()

    search.refresh_from_db()
    assert (search.is_active, search.pause_reasons) == (False, (reason,))
    change = search.status_changes.latest("pk")
    assert (change.actor, change.reason) == (RECONCILE, f"paused (+{reason})")
    assert_invariants(at=NOW, before=ledger)


# --- (A) Tampering: the ledger itself ------------------------------------------------

LEDGER_EDITS = [
    pytest.param("amount", lambda other: 1, id="amount-to-one-micro"),
    pytest.param("idempotency_key", lambda other: "forged", id="idempotency-key"),
    pytest.param("source", lambda other: "admin", id="source"),
    pytest.param(
        "occurred_at",
        lambda other: connection.ops.adapt_datetimefield_value(YESTERDAY),
        id="backdated-out-of-today",
    ),
    pytest.param("campaign_id", lambda other: other.pk, id="moved-to-another-campaign"),
]


@pytest.mark.parametrize(("column", "value"), LEDGER_EDITS)
def test_the_database_refuses_to_update_a_ledger_row_in_sql(
    search: Campaign, column: str, value: Callable[[Campaign], int | str | None]
) -> None:
    event = SpendEvent.objects.filter(campaign=search).latest("pk")
    other = Campaign.objects.get(name__startswith="Campaign")
    ledger = snapshot_ledger()

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),  # PostgreSQL: the test's transaction survives the error
        connection.cursor() as cursor,
    ):
        cursor.execute(
            f"UPDATE ads_spendevent SET {connection.ops.quote_name(column)} = %s WHERE id = %s",
            [value(other), event.pk],
        )

    assert snapshot_ledger() == ledger
    assert_invariants(at=NOW, before=ledger)


def test_the_database_refuses_a_bulk_orm_update_of_the_ledger(search: Campaign) -> None:
    ledger = snapshot_ledger()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        SpendEvent.objects.update(amount=Decimal("0.01"))

    assert_invariants(at=NOW, before=ledger)


@pytest.fixture
def quiet() -> Campaign:
    """A brand and campaign with status history (it started running) but no spend."""
    campaign = CampaignFactory.create(brand__name="Quiet", name="Quiet search")
    refresh_campaign_states(at=NOW, actor="enforce_budget_limits")
    assert campaign.status_changes.exists()
    return campaign


WITH_SPEND = [
    pytest.param(lambda search, quiet: search.brand, id="brand-with-spend"),
    pytest.param(lambda search, quiet: search, id="campaign-with-spend"),
]
WITHOUT_SPEND = [
    pytest.param(lambda search, quiet: quiet.brand, id="brand-with-history-only"),
    pytest.param(lambda search, quiet: quiet, id="campaign-with-history-only"),
]


def delete_in_admin(client: Client, target: Brand | Campaign, how: str) -> Any:
    if how == "delete view":
        return client.post(admin_url(target, "delete"), {"post": "yes"})
    return client.post(
        admin_url(target, "changelist"),
        {"action": "delete_selected", "_selected_action": [target.pk], "post": "yes"},
    )


@pytest.mark.parametrize("pick", WITH_SPEND)
@pytest.mark.parametrize("how", ["delete view", "delete_selected action"])
def test_deleting_a_brand_or_campaign_cannot_take_its_ledger_or_history_with_it(
    admin_client: Client,
    search: Campaign,
    quiet: Campaign,
    pick: Callable[[Campaign, Campaign], Brand | Campaign],
    how: str,
) -> None:
    target = pick(search, quiet)
    ledger, history = snapshot_ledger(), rows(CampaignStatusChange)

    response = delete_in_admin(admin_client, target, how)

    assert response.status_code == 200
    assert "spend(s) in the ledger" in response.content.decode()
    assert "Archive it instead" in response.content.decode()
    assert type(target)._default_manager.filter(pk=target.pk).exists()
    assert rows(CampaignStatusChange) == history
    assert_invariants(at=NOW, before=ledger)


@pytest.mark.parametrize("pick", WITHOUT_SPEND)
@pytest.mark.parametrize("how", ["delete view", "delete_selected action"])
def test_a_brand_or_campaign_without_spend_is_deleted_with_only_its_own_history(
    admin_client: Client,
    search: Campaign,
    quiet: Campaign,
    pick: Callable[[Campaign, Campaign], Brand | Campaign],
    how: str,
) -> None:
    target = pick(search, quiet)
    ledger = snapshot_ledger()
    others = list(CampaignStatusChange.objects.exclude(campaign=quiet).order_by("pk").values())

    response = delete_in_admin(admin_client, target, how)

    assert response.status_code == 302
    assert not type(target)._default_manager.filter(pk=target.pk).exists()
    assert not CampaignStatusChange.objects.filter(campaign_id=quiet.pk).exists()
    assert rows(CampaignStatusChange) == others
    assert SettingChange.objects.filter(object_id=target.pk, field="deleted").exists()
    assert_invariants(at=NOW, before=ledger)


# --- (B) Roles: the matrix of SPEC 10 ------------------------------------------------

ROLES = ("viewer", "manager", "superuser", "staff")

# v = view (list and page), c = change, a = add, d = delete (page, button, bulk action).
# fmt: off
RIGHTS: dict[str, tuple[str, str, str, str]] = {
    #                                     Viewers  Budget    superuser  staff with
    #                                              managers             no group
    # Deleting is refused for anything with spend, whoever asks (archive it instead).
    "ads.brand":                          ("v",    "vcad",   "vcad",    ""),
    "ads.campaign":                       ("v",    "vcad",   "vcad",    ""),
    "ads.schedule":                       ("v",    "vcad",   "vcad",    ""),
    # The ledger and the audit: read-only for everyone, superusers included.
    "ads.spendevent":                     ("v",    "v",      "v",       ""),
    "ads.campaignstatuschange":           ("v",    "v",      "v",       ""),
    "ads.settingchange":                  ("v",    "v",      "v",       ""),
    "ads.budgetalert":                    ("v",    "v",      "v",       ""),
    # Superusers only: Beat's schedules, API keys (README), people and their rights.
    "django_celery_beat.periodictask":    ("",     "",       "vcad",    ""),
    "django_celery_beat.crontabschedule": ("",     "",       "vcad",    ""),
    "ads.apikey":                         ("",     "",       "vcad",    ""),
    "auth.user":                          ("",     "",       "vcad",    ""),
    "auth.group":                         ("",     "",       "vcad",    ""),
}
# fmt: on
MATRIX = [pytest.param(page, role, id=f"{page}-{role}") for page in RIGHTS for role in ROLES]


# Each admin page (GET) and the right it needs.
VIEWS = {"changelist": "v", "change": "v", "add": "a", "delete": "d"}


def rights(page: str, role: str) -> str:
    return RIGHTS[page][ROLES.index(role)]


Form = dict[str, object]


@dataclass(frozen=True)
class Page:
    """One admin page of the matrix: the row it acts on, valid forms for a change and
    an add, and what each of them writes when allowed."""

    target: Callable[[], Model]
    change: Callable[[], Form]
    changed: Mapping[str, object]
    add: Callable[[], Form]
    added: Mapping[str, object]
    audited: bool = field(default=False)  # SPEC 10: written to SettingChange with the user


def management(prefix: str, total: int, initial: int, minimum: int = 0) -> Form:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": str(minimum),
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def brand_form(name: str, daily_budget: str) -> Form:
    return {
        "name": name,
        "timezone": "UTC",
        "is_active": "on",
        "daily_budget": daily_budget,
        "monthly_budget": "3000.00",
        **management("campaigns", 0, 0),
    }


def schedule_form(name: str, window: ScheduleWindow | None) -> Form:
    return {
        "name": name,
        "windows-0-id": "" if window is None else str(window.pk),
        "windows-0-days": ["0", "1", "2", "3", "4"],
        "windows-0-start": "09:00",
        "windows-0-end": "17:00",
        **management("windows", 1, 0 if window is None else 1, minimum=1),
    }


def task_form(name: str) -> Form:
    return {
        "name": name,
        "regtask": "ads.enforce_budget_limits",
        "enabled": "on",
        "interval": str(IntervalSchedule.objects.get().pk),
        "args": "[]",
        "kwargs": "{}",
        "headers": "{}",
    }


def crontab_form(minute: str) -> Form:
    return {
        "minute": minute,
        "hour": "3",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
        "timezone": "UTC",
        **management("periodictask_set", 0, 0),
    }


def forged_event() -> Form:
    search = Campaign.objects.get(name="Search")
    return {
        "campaign": str(search.pk),
        "brand": str(search.brand_id),
        "amount": "1",
        "occurred_at_0": "2026-11-27",
        "occurred_at_1": "11:00",
        "recorded_at_0": "2026-11-27",
        "recorded_at_1": "11:00",
        "source": "admin",
        "idempotency_key": "forged",
    }


PAGES: dict[str, Page] = {
    "ads.brand": Page(
        target=lambda: Brand.objects.get(name="Target brand"),
        change=lambda: brand_form("Target brand", "55.00"),
        changed={"daily_budget": Decimal("55.00")},
        add=lambda: brand_form("Added brand", "10.00"),
        added={"name": "Added brand"},
        audited=True,
    ),
    "ads.campaign": Page(
        target=lambda: Campaign.objects.get(name="Target campaign"),
        change=lambda: {"name": "Target campaign", "is_enabled": "on", "daily_budget": "5.00"},
        changed={"is_enabled": True, "daily_budget": Decimal("5.00")},
        add=lambda: {
            "brand": str(Brand.objects.get(name="Acme").pk),
            "name": "Added campaign",
            "is_enabled": "on",
        },
        added={"name": "Added campaign"},
        audited=True,
    ),
    "ads.schedule": Page(
        target=lambda: Schedule.objects.get(name="Target schedule"),
        change=lambda: schedule_form(
            "Renamed schedule", ScheduleWindow.objects.get(schedule__name="Target schedule")
        ),
        changed={"name": "Renamed schedule"},
        add=lambda: schedule_form("Added schedule", None),
        added={"name": "Added schedule"},
        audited=True,
    ),
    "ads.spendevent": Page(
        target=lambda: SpendEvent.objects.latest("pk"),
        change=forged_event,
        changed={"idempotency_key": "forged"},
        add=forged_event,
        added={"idempotency_key": "forged"},
    ),
    "ads.campaignstatuschange": Page(
        target=lambda: CampaignStatusChange.objects.latest("pk"),
        change=lambda: {"reason": "forged", "actor": "nobody"},
        changed={"reason": "forged"},
        add=lambda: {"reason": "forged", "actor": "nobody"},
        added={"reason": "forged"},
    ),
    "ads.settingchange": Page(
        target=lambda: SettingChange.objects.latest("pk"),
        change=lambda: {"actor": "nobody", "new_value": "forged"},
        changed={"new_value": "forged"},
        add=lambda: {"actor": "nobody", "new_value": "forged"},
        added={"new_value": "forged"},
    ),
    "ads.budgetalert": Page(
        target=lambda: BudgetAlert.objects.latest("pk"),
        change=lambda: {"threshold": "1"},
        changed={"threshold": 1},
        add=lambda: {"threshold": "1"},
        added={"threshold": 1},
    ),
    "django_celery_beat.periodictask": Page(
        target=lambda: PeriodicTask.objects.get(name="Target task"),
        change=lambda: task_form("Renamed task"),
        changed={"name": "Renamed task"},
        add=lambda: task_form("Added task"),
        added={"name": "Added task"},
    ),
    "django_celery_beat.crontabschedule": Page(
        target=lambda: CrontabSchedule.objects.get(minute="30"),
        change=lambda: crontab_form("45"),
        changed={"minute": "45"},
        add=lambda: crontab_form("7"),
        added={"minute": "7"},
    ),
    "ads.apikey": Page(
        target=lambda: ApiKey.objects.get(name="Target key"),
        change=lambda: {"name": "Renamed key", "all_brands": "on"},
        changed={"name": "Renamed key"},
        add=lambda: {"name": "Added key", "all_brands": "on"},
        added={"name": "Added key"},
    ),
    "auth.user": Page(
        target=lambda: User.objects.get(username="target-user"),
        # The way up for anyone who could change people: make them superusers.
        change=lambda: {
            "username": "target-user",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "date_joined_0": "2026-11-27",
            "date_joined_1": "12:00:00",
        },
        changed={"is_superuser": True},
        add=lambda: {
            "username": "added-user",
            "usable_password": "true",
            "password1": "another-long-test-password",
            "password2": "another-long-test-password",
        },
        added={"username": "added-user"},
    ),
    "auth.group": Page(
        target=lambda: Group.objects.get(name="Target group"),
        change=lambda: {"name": "Renamed group"},
        changed={"name": "Renamed group"},
        add=lambda: {"name": "Added group"},
        added={"name": "Added group"},
    ),
}


@pytest.fixture
def world(search: Campaign) -> None:
    """`search`'s ledger, plus one row for each page of the matrix to act on, none of
    them referenced by others (so that deleting it is possible when allowed)."""
    BrandFactory.create(name="Target brand")
    # Disabled and already in the state the rules give it: no status history yet.
    CampaignFactory.create(
        brand=search.brand,
        name="Target campaign",
        is_enabled=False,
        pause_reasons=(PauseReason.DISABLED,),
    )
    schedule = Schedule.objects.create(name="Target schedule")
    ScheduleWindow.objects.create(schedule=schedule, weekdays=0b11111, start=time(9), end=time(17))
    every_5 = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="Target task", task="ads.enforce_dayparting", interval=every_5)
    CrontabSchedule.objects.create(minute="30", hour="3")
    make_api_key(name="Target key")
    User.objects.create(username="target-user", password=UNUSABLE_PASSWORD_PREFIX)
    Group.objects.create(name="Target group")
    brand = search.brand
    brand.monthly_budget = Decimal(3100)
    save_brand(brand, changed_fields=["monthly_budget"], actor="alice", at=NOW)  # an audit row
    refresh_campaign_states(at=NOW, actor="enforce_budget_limits")
    assert SettingChange.objects.exists()
    assert BudgetAlert.objects.exists()


def log_in(client: Client, role: str) -> User:
    # A transactional test elsewhere in the session flushes the groups the data
    # migration made; re-creating them is harmless when they are there.
    sync_groups(apps)
    groups = {"viewer": "Viewers", "manager": "Budget managers"}
    # Not the factory: force_login needs no password, and hashing one takes 0.4 s.
    user = User.objects.create(
        username=role,
        is_staff=True,
        is_superuser=role == "superuser",
        password=UNUSABLE_PASSWORD_PREFIX,
    )
    user.groups.set(Group.objects.filter(name=groups.get(role)))
    client.force_login(user)
    return user


def errors(response: Any) -> object:
    """The form errors of an admin page that answered 200 instead of redirecting."""
    context = response.context or {}
    if "adminform" not in context:
        return response.status_code
    inlines = [formset.formset.errors for formset in context.get("inline_admin_formsets", [])]
    return context["adminform"].form.errors, inlines


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(("page", "role"), MATRIX)
def test_role_opens_the_pages_and_sees_the_buttons_of_its_rights(
    client: Client, page: str, role: str
) -> None:
    allowed = rights(page, role)
    log_in(client, role)
    target = PAGES[page].target()
    ledger = snapshot_ledger()

    pages = {view: client.get(admin_url(target, view)) for view in VIEWS}
    index = client.get(reverse("admin:index")).content.decode()

    assert {view: response.status_code for view, response in pages.items()} == {
        view: 200 if right in allowed else 403 for view, right in VIEWS.items()
    }
    if "v" in allowed:
        assert f'href="{admin_url(target, "changelist")}"' in index
        listing, detail = pages["changelist"].content.decode(), pages["change"].content.decode()
        shown = {
            "save button": 'name="_save"' in detail,
            "add button": 'class="addlink"' in listing,
            "delete link": 'class="deletelink"' in detail,
            "delete selected": 'value="delete_selected"' in listing,
        }
        assert shown == {
            "save button": "c" in allowed,
            "add button": "a" in allowed,
            "delete link": "d" in allowed,
            "delete selected": "d" in allowed,
        }
    else:
        assert admin_url(target, "changelist") not in index
    assert_invariants(at=NOW, before=ledger)


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(("page", "role"), MATRIX)
def test_role_changes_a_row_only_with_the_change_right(
    client: Client, page: str, role: str
) -> None:
    spec = PAGES[page]
    user = log_in(client, role)
    target = spec.target()
    before, ledger = rows(type(target)), snapshot_ledger()

    response = client.post(admin_url(target, "change"), spec.change())

    if "c" in rights(page, role):
        assert response.status_code == 302, errors(response)
        target.refresh_from_db()
        assert {name: getattr(target, name) for name in spec.changed} == spec.changed
        if spec.audited:
            assert SettingChange.objects.filter(actor=user.username, object_id=target.pk).exists()
    else:
        assert response.status_code == 403
        assert rows(type(target)) == before
    assert_invariants(at=NOW, before=ledger)


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(("page", "role"), MATRIX)
def test_role_adds_a_row_only_with_the_add_right(client: Client, page: str, role: str) -> None:
    spec = PAGES[page]
    log_in(client, role)
    model = type(spec.target())
    before, ledger = rows(model), snapshot_ledger()

    response = client.post(admin_url(model, "add"), spec.add())

    if "a" in rights(page, role):
        # A new API key answers with the page that shows its secret once.
        assert response.status_code == (200 if model is ApiKey else 302), errors(response)
        assert model._default_manager.filter(**spec.added).exists()
    else:
        assert response.status_code == 403
        assert rows(model) == before
    assert_invariants(at=NOW, before=ledger)


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(("page", "role"), MATRIX)
def test_role_deletes_a_row_only_with_the_delete_right(
    client: Client, page: str, role: str
) -> None:
    log_in(client, role)
    target = PAGES[page].target()
    before, ledger = rows(type(target)), snapshot_ledger()

    response = client.post(admin_url(target, "delete"), {"post": "yes"})

    if "d" in rights(page, role):
        assert response.status_code == 302, errors(response)
        assert not type(target)._default_manager.filter(pk=target.pk).exists()
    else:
        assert response.status_code == 403
        assert rows(type(target)) == before
    assert_invariants(at=NOW, before=ledger)


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(("page", "role"), MATRIX)
def test_role_bulk_deletes_only_with_the_delete_right(client: Client, page: str, role: str) -> None:
    allowed = rights(page, role)
    log_in(client, role)
    target = PAGES[page].target()
    before, ledger = rows(type(target)), snapshot_ledger()

    response = client.post(
        admin_url(target, "changelist"),
        {"action": "delete_selected", "_selected_action": [target.pk], "post": "yes"},
    )

    if "d" in allowed:
        assert response.status_code == 302, errors(response)
        assert not type(target)._default_manager.filter(pk=target.pk).exists()
    else:
        # With the view right the action is not offered, and posting it anyway
        # deletes nothing; without it the page itself is refused.
        if "v" not in allowed:
            assert response.status_code == 403
        assert rows(type(target)) == before
    assert_invariants(at=NOW, before=ledger)


@pytest.mark.usefixtures("world")
@pytest.mark.parametrize(
    ("role", "may_switch"),
    [("viewer", False), ("manager", True), ("superuser", True), ("staff", False)],
)
def test_disable_action_on_campaigns_follows_the_change_right(
    client: Client, role: str, may_switch: bool
) -> None:
    user = log_in(client, role)
    search = Campaign.objects.get(name="Search")
    url = admin_url(Campaign, "changelist")
    offered = 'value="disable"' in client.get(url).content.decode()
    ledger = snapshot_ledger()

    client.post(url, {"action": "disable", "_selected_action": [search.pk]})

    search.refresh_from_db()
    assert (offered, search.is_enabled) == (may_switch, not may_switch)
    switched_by = search.status_changes.filter(actor=user.username).exists()
    assert switched_by is may_switch
    assert_invariants(at=NOW, before=ledger)
