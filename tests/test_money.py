"""Money is exact on every database (SPEC 2)."""

from decimal import Decimal

import pytest
from django.db.models import F, Sum
from pytest_django import Settings

from ads.models import Brand
from ads.money import format_money, money_value, to_micros
from ads.rules import left_or_over, spend_of_budget
from tests.factories import BrandFactory


@pytest.mark.django_db
def test_budgets_round_trip_as_decimals() -> None:
    BrandFactory.create(daily_budget=Decimal("123.45"), monthly_budget=Decimal("9999999999.99"))

    brand = Brand.objects.get()

    assert brand.daily_budget == Decimal("123.45")
    assert brand.monthly_budget == Decimal("9999999999.99")
    assert isinstance(brand.daily_budget, Decimal)


@pytest.mark.django_db
def test_sql_arithmetic_on_amounts_is_exact() -> None:
    BrandFactory.create()
    for _ in range(10):
        Brand.objects.update(
            current_daily_spend=F("current_daily_spend") + money_value(Decimal("0.1"))
        )

    assert Brand.objects.get().current_daily_spend == Decimal("1.0")
    assert Brand.objects.aggregate(total=Sum("current_daily_spend"))["total"] == Decimal("1")


@pytest.mark.django_db
def test_lookups_compare_amounts_not_micros() -> None:
    BrandFactory.create(daily_budget=Decimal("100.00"))

    assert Brand.objects.filter(daily_budget=100).exists()
    assert Brand.objects.filter(daily_budget__gt=Decimal("99.99")).exists()


def test_floats_are_refused_as_money() -> None:
    with pytest.raises(TypeError, match="money must be a Decimal"):
        Brand._meta.get_field("daily_budget").get_prep_value(0.1)


def test_to_micros_refuses_sub_micro_amounts() -> None:
    assert to_micros(Decimal("0.000001")) == 1
    with pytest.raises(ValueError, match="more than 6 decimal places"):
        to_micros(Decimal("0.0000001"))


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("100", "EUR", "€100.00"),
        ("99.9", "USD", "$99.90"),
        ("0.123456", "EUR", "€0.123456"),
        ("1234567.5", "EUR", "€1,234,567.50"),
        ("12000", "JPY", "¥12,000"),
        ("12000.00", "JPY", "¥12,000"),
        ("0.5", "JPY", "¥0.5"),  # a spend finer than a yen keeps its places
        ("1.5", "KWD", "KWD1.500"),
    ],
)
def test_format_money_shows_the_currency_and_its_minor_units_or_the_real_precision(
    amount: str, currency: str, text: str
) -> None:
    assert format_money(Decimal(amount), currency) == text


def test_format_money_follows_money_locale(settings: Settings) -> None:
    settings.MONEY_LOCALE = "de_DE"
    assert format_money(Decimal("1234.5"), "EUR") == "1.234,50\xa0€"
    assert format_money(Decimal("12000"), "JPY") == "12.000\xa0¥"


# spend, budget: what the page shows
LEFT_OR_OVER = {
    ("47", "50"): "€3.00 left",
    ("50", "50"): "€0.00 left",
    ("55", "50"): "€5.00 over",
    ("0.000001", "0"): "€0.000001 over",
    ("1234.5", "12"): "€1,222.50 over",
}


@pytest.mark.parametrize(
    ("spend", "budget", "shown"), [(*pair, shown) for pair, shown in LEFT_OR_OVER.items()]
)
def test_left_or_over_says_which_side_of_the_budget_spend_is(
    spend: str, budget: str, shown: str
) -> None:
    assert left_or_over(Decimal(spend), Decimal(budget), "EUR") == shown


SPEND_OF_BUDGET = {
    ("82", "100"): "¥82 / ¥100 (82 %)",
    ("100", "100"): "¥100 / ¥100 (exhausted)",
    ("55", "50"): "¥55 / ¥50 (¥5 over)",
    ("0", "0"): "¥0 / ¥0 (exhausted)",  # a budget of 0 allows nothing
}


@pytest.mark.parametrize(
    ("spend", "budget", "shown"), [(*pair, shown) for pair, shown in SPEND_OF_BUDGET.items()]
)
def test_spend_of_budget_reads_the_same_for_brands_and_campaigns(
    spend: str, budget: str, shown: str
) -> None:
    assert spend_of_budget(Decimal(spend), Decimal(budget), "JPY") == shown
