"""Counters have a limit (2**63 - 1 micros): a spend that would pass it is refused
whole, on SQLite (where the sum would silently turn into a REAL) and on PostgreSQL
(where it would fail with a raw DataError); and one brand's data never stops a
periodic pass for the other brands (issue 12, item 5)."""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from ads import tasks
from ads.models import MAX_COUNTER, Brand, Campaign, SpendEvent
from ads.services import SpendInput, record_spend, record_spend_batch
from tests.conftest import NOW
from tests.factories import CampaignFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]

LIMIT = "9,223,372,036,854.775807"


@pytest.fixture
def campaign() -> Campaign:
    return CampaignFactory.create(
        name="Search",
        brand__name="Acme",
        brand__daily_budget=Decimal("9999999999.99"),
        brand__monthly_budget=Decimal("9999999999.99"),
        evaluated_at=NOW,
    )


def counters() -> tuple[object, ...]:
    brand = Brand.objects.get(name="Acme")
    return (
        brand.current_daily_spend,
        brand.current_monthly_spend,
        list(Campaign.objects.filter(brand=brand).values_list("daily_spend", flat=True)),
        connection.vendor == "sqlite" and storage_types(),
    )


def storage_types() -> list[str]:
    """SQLite's own type of each counter: 'integer', or 'real' once corrupted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT typeof(current_daily_spend), typeof(current_monthly_spend) FROM ads_brand"
        )
        brands = [kind for row in cursor.fetchall() for kind in row]
        cursor.execute("SELECT typeof(daily_spend) FROM ads_campaign")
        return brands + [kind for (kind,) in cursor.fetchall()]


NEAR_THE_LIMIT = [
    pytest.param(Brand, "current_daily_spend", "spend today of brand", id="brand-daily"),
    pytest.param(Brand, "current_monthly_spend", "spend this month of brand", id="brand-monthly"),
    pytest.param(Campaign, "daily_spend", "spend today of campaign", id="campaign-daily"),
]


@pytest.mark.parametrize(("model", "counter", "named"), NEAR_THE_LIMIT)
def test_a_spend_that_would_pass_a_counters_limit_is_refused_with_one_line(
    campaign: Campaign, model: type[Brand | Campaign], counter: str, named: str
) -> None:
    model.objects.update(**{counter: MAX_COUNTER - Decimal("1.00")})
    before = counters()

    with pytest.raises(CommandError) as error:
        call_command("simulate_spend", str(campaign.pk), "2.00", stdout=StringIO())

    assert str(error.value).startswith(f"amount: would take the {named} ")
    assert f"past {LIMIT}, the most a spend counter holds; nothing was recorded" in str(error.value)
    assert "\n" not in str(error.value)
    assert not SpendEvent.objects.exists()
    assert counters() == before


def test_a_spend_that_reaches_the_limit_exactly_is_recorded(campaign: Campaign) -> None:
    Brand.objects.update(current_monthly_spend=MAX_COUNTER - Decimal("2.00"))

    record_spend(campaign.pk, "2.00", at=NOW)

    assert Brand.objects.get().current_monthly_spend == MAX_COUNTER


def test_a_batch_that_would_pass_a_counters_limit_is_refused_whole(campaign: Campaign) -> None:
    Brand.objects.update(current_monthly_spend=MAX_COUNTER - Decimal("1500000000"))
    other = CampaignFactory.create(brand=campaign.brand)
    before = counters()
    spends = [SpendInput(c, "999999999.99", None, f"k-{c}") for c in (campaign.pk, other.pk)]

    with pytest.raises(ValidationError) as error:
        record_spend_batch(spends, at=NOW)

    assert error.value.message_dict == {
        "events": [
            f'would take the spend this month of brand {campaign.brand_id} "Acme" past '
            f"{LIMIT}, the most a spend counter holds; nothing was recorded"
        ]
    }
    assert not SpendEvent.objects.exists()
    assert counters() == before


def ledger_past_the_limit(campaign: Campaign, at: datetime) -> None:
    """Spend in the ledger that no counter can hold (more than the checks let through
    in one period, as data written before them, or by a time zone change, can be)."""
    SpendEvent.objects.bulk_create(
        SpendEvent(
            campaign=campaign, brand=campaign.brand, amount=amount, occurred_at=at,
            recorded_at=at, source="cli", idempotency_key=f"huge-{n}",
        )
        for n, amount in enumerate([MAX_COUNTER, Decimal("1.00")])
    )  # fmt: skip


def test_reconcile_repairs_other_brands_when_one_brands_ledger_passes_the_limit(
    campaign: Campaign, caplog: pytest.LogCaptureFixture
) -> None:
    ledger_past_the_limit(campaign, NOW)
    other = CampaignFactory.create(brand__name="Other")
    record_spend(other.pk, "30", at=NOW)
    Brand.objects.filter(name="Other").update(current_daily_spend=Decimal(99))  # tampered

    with caplog.at_level(logging.WARNING):
        tasks.reconcile_spend_counters()

    assert Brand.objects.get(name="Other").current_daily_spend == Decimal(30)
    acme = Brand.objects.get(name="Acme")
    assert (acme.current_daily_spend, acme.current_monthly_spend) == (MAX_COUNTER, MAX_COUNTER)
    assert Campaign.objects.get(pk=campaign.pk).daily_spend == MAX_COUNTER
    assert not Campaign.objects.get(pk=campaign.pk).is_active
    assert (
        f'brand {campaign.brand_id} "Acme": the ledger sums to 9,223,372,036,855.775807 for '
        f"current_daily_spend on 2026-11-27, past {LIMIT}, the most a spend counter holds"
    ) in caplog.text
    if connection.vendor == "sqlite":
        assert set(storage_types()) == {"integer"}


def test_a_reset_rolls_other_brands_over_when_one_brands_new_day_passes_the_limit(
    campaign: Campaign,
    caplog: pytest.LogCaptureFixture,
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    other = CampaignFactory.create(brand__name="Other", brand__daily_budget=Decimal(10))
    record_spend(other.pk, "10", at=NOW)  # paused for the day
    tomorrow = NOW + timedelta(days=1)
    ledger_past_the_limit(campaign, tomorrow)
    time_machine.move_to(tomorrow, tick=False)

    with caplog.at_level(logging.WARNING):
        tasks.reset_daily_budgets()

    assert Brand.objects.get(name="Other").current_daily_spend == 0
    assert Campaign.objects.get(pk=other.pk).is_active
    acme = Brand.objects.get(name="Acme")
    assert (acme.counters_day, acme.current_daily_spend) == (tomorrow.date(), MAX_COUNTER)
    assert f'brand {campaign.brand_id} "Acme": the ledger sums to' in caplog.text


def unknown_zone(campaign: Campaign) -> None:
    """A brand whose stored time zone this machine does not know (edited in the
    database, or a zone tzdata has since removed)."""
    Brand.objects.filter(pk=campaign.brand_id).update(timezone="Mars/Olympus_Mons")


PASSES: list[tuple[str, Callable[[], None]]] = [
    ("enforce_budget_limits", tasks.enforce_budget_limits),
    ("reset_daily_budgets", tasks.reset_daily_budgets),
    ("reset_monthly_budgets", tasks.reset_monthly_budgets),
    ("reconcile_spend_counters", tasks.reconcile_spend_counters),
]


@pytest.mark.parametrize(("name", "task"), PASSES, ids=[name for name, _ in PASSES])
def test_a_periodic_pass_goes_on_for_the_other_brands_when_one_brands_data_fails_it(
    campaign: Campaign,
    name: str,
    task: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
    time_machine: time_machine.TimeMachineFixture,
) -> None:
    CampaignFactory.create(brand__name="Other")
    Brand.objects.update(counters_day=None, counters_month=None)  # every pass rolls both
    unknown_zone(campaign)

    with caplog.at_level(logging.ERROR):
        task()

    assert Brand.objects.get(name="Other").counters_day == NOW.date()
    assert f'brand {campaign.brand_id} "Acme" skipped' in caplog.text
    assert "Mars/Olympus_Mons" in caplog.text
