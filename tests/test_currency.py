"""Each brand's currency: which codes are offered, budgets held to its minor unit, fixed
once the brand has spend, and set from DEFAULT_CURRENCY where none was chosen."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from pytest_django import Settings

from ads.models import Brand, Campaign, SettingChange, SpendEvent
from ads.money import BUDGET_DECIMAL_PLACES, active_currencies, minor_units
from ads.services import record_spend, save_brand
from tests.conftest import NOW
from tests.factories import BrandFactory, CampaignFactory
from tests.test_settings import assert_one_error_line, manage


def test_the_offered_currencies_are_those_in_use_today() -> None:
    offered = active_currencies()

    assert {"EUR", "USD", "JPY", "KRW", "GBP", "KWD", "BHD", "TND", "CHF"} <= offered
    # Retired (the Deutsche Mark; Croatia's kuna, replaced by the euro in 2023) and funds
    # codes (Chile's accounting unit) are not currencies a brand pays in.
    assert not {"DEM", "HRK", "CLF", "XXX"} & offered


def test_no_offered_currency_has_more_places_than_a_budget_column_keeps() -> None:
    assert max(minor_units(code) for code in active_currencies()) == BUDGET_DECIMAL_PLACES


@pytest.mark.parametrize(
    ("currency", "places"),
    [("JPY", 0), ("KRW", 0), ("EUR", 2), ("USD", 2), ("KWD", 3), ("BHD", 3), ("TND", 3)],
)
def test_minor_units_come_from_the_currency(currency: str, places: int) -> None:
    assert minor_units(currency) == places


# currency, budget, the message's words when refused (None: accepted)
BUDGETS = {
    "JPY 10.50": ("JPY", "10.50", "JPY (Japanese Yen) has no minor unit: give a whole amount"),
    "KRW 10.5": ("KRW", "10.5", "KRW (South Korean Won) has no minor unit"),
    "JPY 12000": ("JPY", "12000", None),
    "EUR 10.505": ("EUR", "10.505", "EUR (Euro) amounts have at most 2 decimal places"),
    "USD 10.505": ("USD", "10.505", "USD (US Dollar) amounts have at most 2 decimal places"),
    "EUR 10.50": ("EUR", "10.50", None),
    "KWD 10.505": ("KWD", "10.505", None),
    "BHD 10.505": ("BHD", "10.505", None),
    "TND 10.5055": ("TND", "10.5055", "TND (Tunisian Dinar) amounts have at most 3 decimal"),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("currency", "budget", "refusal"), BUDGETS.values(), ids=BUDGETS.keys())
@pytest.mark.parametrize("field", ["daily_budget", "monthly_budget"])
def test_a_brand_budget_is_held_to_its_currency_minor_unit(
    field: str, currency: str, budget: str, refusal: str | None
) -> None:
    brand = Brand(name="Acme", currency=currency, daily_budget=1, monthly_budget=1)
    setattr(brand, field, Decimal(budget))

    if refusal is None:
        brand.full_clean()
        brand.save()
        assert getattr(Brand.objects.get(), field) == Decimal(budget)
    else:
        with pytest.raises(ValidationError) as refused:
            brand.full_clean()
        assert any(refusal in m for m in refused.value.message_dict[field])
        assert f"(got {budget})" in " ".join(refused.value.message_dict[field])


@pytest.mark.django_db
@pytest.mark.parametrize(("currency", "budget", "refusal"), BUDGETS.values(), ids=BUDGETS.keys())
def test_a_campaign_budget_is_held_to_its_brands_currency(
    currency: str, budget: str, refusal: str | None
) -> None:
    brand = BrandFactory.create(currency=currency, daily_budget=0)
    campaign = Campaign(brand=brand, name="Search", daily_budget=Decimal(budget))

    if refusal is None:
        campaign.full_clean()
    else:
        with pytest.raises(ValidationError) as refused:
            campaign.full_clean()
        assert any(refusal in m for m in refused.value.message_dict["daily_budget"])


@pytest.mark.django_db
def test_a_spend_keeps_micros_whatever_the_currency() -> None:
    campaign = CampaignFactory.create(brand__currency="JPY", evaluated_at=NOW)

    record_spend(campaign.pk, "0.123456", currency="JPY", at=NOW)

    assert SpendEvent.objects.get().amount == Decimal("0.123456")


@pytest.mark.django_db
def test_a_brand_with_spend_cannot_change_currency_and_nothing_is_written() -> None:
    campaign = CampaignFactory.create(brand__currency="EUR", evaluated_at=NOW)
    record_spend(campaign.pk, "5", at=NOW)
    brand = Brand.objects.get()
    brand.currency = "USD"

    with pytest.raises(ValidationError) as refused:
        save_brand(brand, changed_fields=["currency"], actor="alice", at=NOW)

    (message,) = refused.value.message_dict["currency"]
    assert message.startswith("stays EUR: this brand has spend in EUR")
    assert "To pay in USD, create a new brand" in message
    assert Brand.objects.get().currency == "EUR"
    assert not SettingChange.objects.exists()


@pytest.mark.django_db
def test_a_brand_without_spend_changes_currency_and_it_is_audited() -> None:
    brand = BrandFactory.create(currency="EUR", daily_budget=Decimal("100"))
    brand.currency = "JPY"

    save_brand(brand, changed_fields=["currency"], actor="alice", at=NOW)

    assert Brand.objects.get().currency == "JPY"
    change = SettingChange.objects.get()
    assert (change.field, change.old_value, change.new_value, change.actor) == (
        "currency",
        "EUR",
        "JPY",
        "alice",
    )


@pytest.mark.django_db
def test_a_currency_change_that_leaves_budgets_too_precise_is_refused() -> None:
    brand = BrandFactory.create(currency="EUR", daily_budget=Decimal("10.50"))
    brand.currency = "JPY"

    with pytest.raises(ValidationError) as refused:
        save_brand(brand, changed_fields=["currency"], actor="alice", at=NOW)

    assert "JPY (Japanese Yen) has no minor unit" in refused.value.message_dict["daily_budget"][0]
    assert Brand.objects.get().currency == "EUR"


@pytest.mark.django_db
def test_a_new_brand_takes_the_configured_default_currency(settings: Settings) -> None:
    settings.DEFAULT_CURRENCY = "GBP"

    assert Brand.objects.create(name="Acme", daily_budget=1, monthly_budget=1).currency == "GBP"


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_brands_the_default_currency(settings: Settings) -> None:
    settings.DEFAULT_CURRENCY = "USD"
    executor = MigrationExecutor(connection)
    before, after = [("ads", "0012_alert_per_crossing")], [("ads", "0013_brand_currency")]
    executor.migrate(before)
    old_brand = executor.loader.project_state(before).apps.get_model("ads", "Brand")
    old_brand.objects.create(name="Made before currencies", daily_budget=5, monthly_budget=50)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    new_brand = executor.loader.project_state(after).apps.get_model("ads", "Brand")
    assert new_brand.objects.get().currency == "USD"
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.process
@pytest.mark.parametrize(
    ("setting", "value", "start"),
    [
        ("DEFAULT_CURRENCY", "EURO", "error: DEFAULT_CURRENCY='EURO' is not an ISO 4217"),
        ("DEFAULT_CURRENCY", "ABC", "error: DEFAULT_CURRENCY='ABC' is not an ISO 4217"),
        ("MONEY_LOCALE", "xx_YY", "error: MONEY_LOCALE='xx_YY' is not a locale Babel knows"),
    ],
)
def test_a_bad_money_setting_is_one_line_naming_it(setting: str, value: str, start: str) -> None:
    result = manage("check", DEBUG="1", **{setting: value})

    assert_one_error_line(result, start)
