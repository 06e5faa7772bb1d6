"""Scenario 12, tampering (SPEC 4, 7): a counter edited behind the application's back is
reported, audited and repaired by the reconcile task; the ledger refuses UPDATE in the
database itself; deleting a brand or campaign in the admin cannot take its ledger or
history with it. The roles of SPEC section 10 are in test_roles.py.
"""

import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client

from ads import tasks
from ads.models import (
    Brand,
    Campaign,
    CampaignStatusChange,
    SettingChange,
    SpendEvent,
)
from ads.money import to_micros
from ads.rules import PauseReason
from ads.services import refresh_campaign_states
from tests.conftest import NOW, admin_url, rows
from tests.factories import CampaignFactory
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
    delta = Decimal(tampered) - Decimal(truth)
    delta_text = f"-€{-delta:.2f}" if delta < 0 else f"€{delta:.2f}"  # amounts under 1,000
    assert warnings == [
        f"counter {counter} of {owner} {target.pk} ({target.name}) for {period} was €{tampered}, "
        f"ledger says €{truth} (delta {delta_text}): repaired"
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
    assert f"(delta €{today.amount:.2f})" in caplog.text
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


@pytest.fixture
def target(request: pytest.FixtureRequest, search: Campaign, quiet: Campaign) -> Brand | Campaign:
    """The row to delete: the parameter picks it from `search` and `quiet`."""
    pick: Callable[[Campaign, Campaign], Brand | Campaign] = request.param
    return pick(search, quiet)


HOW = pytest.mark.parametrize("how", ["delete view", "delete_selected action"])


def delete_in_admin(client: Client, target: Brand | Campaign, how: str) -> Any:
    if how == "delete view":
        return client.post(admin_url(target, "delete"), {"post": "yes"})
    return client.post(
        admin_url(target, "changelist"),
        {"action": "delete_selected", "_selected_action": [target.pk], "post": "yes"},
    )


@pytest.mark.parametrize("target", WITH_SPEND, indirect=True)
@HOW
def test_deleting_a_brand_or_campaign_cannot_take_its_ledger_or_history_with_it(
    admin_client: Client, target: Brand | Campaign, how: str
) -> None:
    ledger, history = snapshot_ledger(), rows(CampaignStatusChange)

    response = delete_in_admin(admin_client, target, how)

    assert response.status_code == 200
    assert "spend(s) in the ledger" in response.content.decode()
    assert "Archive it instead" in response.content.decode()
    assert type(target)._default_manager.filter(pk=target.pk).exists()
    assert rows(CampaignStatusChange) == history
    assert_invariants(at=NOW, before=ledger)


@pytest.mark.parametrize("target", WITHOUT_SPEND, indirect=True)
@HOW
def test_a_brand_or_campaign_without_spend_is_deleted_with_only_its_own_history(
    admin_client: Client, quiet: Campaign, target: Brand | Campaign, how: str
) -> None:
    ledger = snapshot_ledger()
    others = list(CampaignStatusChange.objects.exclude(campaign=quiet).order_by("pk").values())

    response = delete_in_admin(admin_client, target, how)

    assert response.status_code == 302
    assert not type(target)._default_manager.filter(pk=target.pk).exists()
    assert not CampaignStatusChange.objects.filter(campaign_id=quiet.pk).exists()
    assert rows(CampaignStatusChange) == others
    assert SettingChange.objects.filter(object_id=target.pk, field="deleted").exists()
    assert_invariants(at=NOW, before=ledger)
