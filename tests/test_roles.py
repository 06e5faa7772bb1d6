"""The roles of SPEC section 10 in one matrix: each role gets exactly the admin rights
SPEC 10 gives it, whatever page or button it tries; the ledger and the audit refuse
every write in the admin, superusers included (scenario 12's tampering is in
test_tampering.py).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import Group, User
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from ads.models import (
    ApiKey,
    Brand,
    BudgetAlert,
    Campaign,
    CampaignStatusChange,
    Event,
    Schedule,
    ScheduleWindow,
    SettingChange,
    SpendEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from ads.roles import sync_groups
from ads.rules import PauseReason
from ads.services import refresh_campaign_states, save_brand
from tests.conftest import NOW, admin_url, make_api_key, rows
from tests.factories import BrandFactory, CampaignFactory, WebhookEndpointFactory
from tests.invariants import assert_invariants, snapshot_ledger

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


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
    "ads.event":                          ("v",    "v",      "v",       ""),
    # Superusers only: Beat's schedules, API keys (README), people and their rights.
    "django_celery_beat.periodictask":    ("",     "",       "vcad",    ""),
    "django_celery_beat.crontabschedule": ("",     "",       "vcad",    ""),
    "ads.apikey":                         ("",     "",       "vcad",    ""),
    "ads.webhookendpoint":                ("",     "",       "vcad",    ""),
    # Read-only like the ledger; superusers see them and may send them again.
    "ads.webhookdelivery":                ("",     "",       "v",       ""),
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


def brand_form(name: str, daily_budget: str, currency: str) -> Form:
    return {
        "name": name,
        "timezone": "UTC",
        "currency": currency,
        "is_active": "on",
        "daily_budget": daily_budget,
        "monthly_budget": "3000.00",
        **management("campaigns", 0, 0),
    }


def endpoint_form(name: str) -> Form:
    return {
        "name": name,
        "kind": "webhook",
        "url": "https://93.184.216.34/in",
        "all_types": "on",
        "all_brands": "on",
        "is_enabled": "on",
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
        # The target has no spend yet, so its currency may still change (SPEC 12).
        change=lambda: brand_form("Target brand", "55.00", "USD"),
        changed={"daily_budget": Decimal("55.00"), "currency": "USD"},
        add=lambda: brand_form("Added brand", "10000", "JPY"),
        added={"name": "Added brand", "currency": "JPY"},
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
    "ads.event": Page(
        target=lambda: Event.objects.latest("pk"),
        change=lambda: {"actor": "nobody", "type": "campaign.resumed"},
        changed={"actor": "nobody"},
        add=lambda: {"actor": "nobody", "type": "campaign.resumed"},
        added={"actor": "nobody"},
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
    "ads.webhookendpoint": Page(
        target=lambda: WebhookEndpoint.objects.get(name="Target endpoint"),
        change=lambda: endpoint_form("Renamed endpoint"),
        changed={"name": "Renamed endpoint"},
        add=lambda: endpoint_form("Added endpoint"),
        added={"name": "Added endpoint"},
    ),
    "ads.webhookdelivery": Page(
        target=lambda: WebhookDelivery.objects.latest("pk"),
        change=lambda: {"status": "delivered", "attempts": "9"},
        changed={"attempts": 9},
        add=lambda: {"status": "delivered", "attempts": "9"},
        added={"attempts": 9},
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
    endpoint = WebhookEndpointFactory.create(name="Target endpoint", url="https://93.184.216.34/in")
    User.objects.create(username="target-user", password=UNUSABLE_PASSWORD_PREFIX)
    Group.objects.create(name="Target group")
    brand = search.brand
    brand.monthly_budget = Decimal(3100)
    save_brand(brand, changed_fields=["monthly_budget"], actor="alice", at=NOW)  # an audit row
    refresh_campaign_states(at=NOW, actor="enforce_budget_limits")
    assert SettingChange.objects.exists()
    assert BudgetAlert.objects.exists()
    assert Event.objects.exists()
    assert WebhookDelivery.objects.filter(endpoint=endpoint).exists()


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
        # A new API key or webhook answers with the page that shows its secret once.
        shows_secret = model in (ApiKey, WebhookEndpoint)
        assert response.status_code == (200 if shows_secret else 302), errors(response)
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


# A viewer's list offers no action at all, so the post is the list again; a staff user
# without a role may not see it.
STATUS_AFTER_DISABLE = {"viewer": 200, "manager": 302, "superuser": 302, "staff": 403}


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

    response = client.post(url, {"action": "disable", "_selected_action": [search.pk]})

    assert response.status_code == STATUS_AFTER_DISABLE[role]
    search.refresh_from_db()
    assert (offered, search.is_enabled) == (may_switch, not may_switch)
    switched_by = search.status_changes.filter(actor=user.username).exists()
    assert switched_by is may_switch
    assert_invariants(at=NOW, before=ledger)
