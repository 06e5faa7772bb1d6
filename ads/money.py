"""Exact money: `Decimal` in Python, integer micros (millionths) in SQL.

SQLite evaluates `DecimalField` arithmetic in floating point, so `F("spend") + x` is
not exact there. Storing micros in a 64-bit integer column keeps every sum exact on
SQLite and PostgreSQL alike, the way the Google Ads API carries amounts.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from babel.core import get_global
from babel.numbers import (
    format_currency,
    format_decimal,
    get_currency_name,
    get_currency_precision,
    get_territory_currencies,
)
from django import forms
from django.conf import settings
from django.core import validators
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Combinable, Expression

SPEND_DECIMAL_PLACES = 6
# The most any offered currency has (KWD, BHD, TND...: 3). A budget is then checked
# against its own currency's minor unit (budget_places_error).
BUDGET_DECIMAL_PLACES = 3
MICROS_PER_UNIT = 10**SPEND_DECIMAL_PLACES
MICRO = Decimal(1).scaleb(-SPEND_DECIMAL_PLACES)  # 0.000001
CENT = Decimal("0.01")
# The largest single spend and the largest budget. Both leave room in a signed 64-bit
# micros column for counters that sum thousands of maximal spends.
MAX_SPEND = Decimal("999999999.999999")
MAX_BUDGET = Decimal("9999999999.99")


def to_micros(amount: Decimal) -> int:
    """Exact micros of `amount`; it must have at most SPEND_DECIMAL_PLACES places."""
    micros = amount * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount} has more than {SPEND_DECIMAL_PLACES} decimal places")
    return int(micros)


def canonical(amount: Decimal) -> Decimal:
    """The same amount with two decimals, or as many as it really has: 99.90, 0.123456."""
    cents = amount.quantize(CENT)
    return cents if cents == amount else amount.normalize()


def decimal_text(amount: Decimal) -> str:
    """An amount as machines read it (API fields, event payloads, audit values): a plain
    decimal string, canonical, the same wherever it is sent: "99.90", "0.123456"."""
    return str(canonical(amount))


def from_micros(micros: int | Decimal) -> Decimal:
    """canonical(micros / 10**6), computed without division: this runs for every money
    column of every row an enforcement pass reads."""
    whole = int(micros)
    if whole % 10_000 == 0:
        return Decimal(whole // 10_000).scaleb(-2)
    return Decimal(whole).scaleb(-6).normalize()


def format_amount(amount: Decimal) -> str:
    """A number without a currency (a limit in an error message), in MONEY_LOCALE:
    1,234.5 or 999,999,999.999999."""
    return format_decimal(amount, locale=settings.MONEY_LOCALE, decimal_quantization=False)


def format_money(amount: Decimal, currency: str) -> str:
    """For people: the amount in its currency, written the MONEY_LOCALE way (€1,234.50,
    ¥12,000, KWD1.500). Never rounded: a spend of 0.123456 shows all its places."""
    return format_currency(
        amount, currency, locale=settings.MONEY_LOCALE, decimal_quantization=False
    )


# --- Currencies ------------------------------------------------------------------------
# From CLDR, through Babel: which codes are legal tender today and how many decimal
# places (minor units) each has. No conversion between currencies anywhere.


@cache
def active_currencies() -> frozenset[str]:
    """ISO 4217 codes that are legal tender in some territory today (154 in CLDR 47):
    not retired ones (DEM, HRK) nor funds codes (CLF, USN)."""
    today = datetime.now(UTC).date()
    return frozenset(
        code
        for territory in get_global("territory_currencies")
        for code in get_territory_currencies(territory, today, tender=True)
    )


def currency_choices() -> list[tuple[str, str]]:
    """For the admin's select: 'EUR – Euro', by code."""
    return [(code, f"{code} – {currency_name(code)}") for code in sorted(active_currencies())]


def currency_name(code: str) -> str:
    return str(get_currency_name(code, locale=settings.MONEY_LOCALE))


def minor_units(currency: str) -> int:
    """Decimal places of the currency's smallest unit: JPY 0, EUR 2, KWD 3."""
    return int(get_currency_precision(currency))


BUDGET_NO_MINOR_UNIT = "{currency} ({name}) has no minor unit: give a whole amount (got {value})"
BUDGET_TOO_PRECISE = (
    "{currency} ({name}) amounts have at most {places} decimal places (got {value})"
)


def budget_places_error(amount: Decimal, currency: str) -> str | None:
    """Why `amount` cannot be a budget in `currency` (more places than its minor unit), or
    None. A spend is not held to this: platforms report cost in micros."""
    places = minor_units(currency)
    if amount == amount.quantize(Decimal(1).scaleb(-places)):
        return None
    message = BUDGET_NO_MINOR_UNIT if places == 0 else BUDGET_TOO_PRECISE
    return message.format(
        currency=currency, name=currency_name(currency), places=places, value=amount
    )


class MoneyField(models.BigIntegerField[Decimal | int | Combinable, Decimal]):
    """A `Decimal` amount stored as integer micros.

    `decimal_places` says how precise the amount may be (2 for budgets, 6 for spend);
    `max_value` caps it. Arithmetic in queries works on micros, so add amounts with
    `money_value()` rather than a bare `Decimal`.
    """

    # django-stubs' plugin reads these for the types of create()/get_or_create() arguments.
    _pyi_private_set_type: Decimal | int | Combinable  # type: ignore[assignment]  # money, not int
    _pyi_private_get_type: Decimal  # type: ignore[assignment]  # money is read as Decimal

    def __init__(
        self,
        *args: Any,
        decimal_places: int = SPEND_DECIMAL_PLACES,
        max_value: Decimal = MAX_SPEND,
        **kwargs: Any,
    ) -> None:
        self.decimal_places = decimal_places
        self.max_value = max_value
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["decimal_places"] = self.decimal_places
        kwargs["max_value"] = self.max_value
        return name, path, args, kwargs

    @property
    def validators(self) -> list[Callable[[Any], None]]:
        # Replaces BigIntegerField's range validators, which would compare the
        # Decimal amount against the micros range.
        return [
            validators.MinValueValidator(Decimal(0)),
            validators.MaxValueValidator(self.max_value),
            validators.DecimalValidator(
                max_digits=len(str(int(self.max_value))) + self.decimal_places,
                decimal_places=self.decimal_places,
            ),
        ]

    def from_db_value(
        self, value: int | Decimal | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> Decimal | None:
        return None if value is None else from_micros(value)

    def to_python(self, value: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return forms.DecimalField().to_python(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super(models.IntegerField, self).get_prep_value(value)
        if value is None:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)  # whole units, not micros
        if isinstance(value, Decimal):
            return to_micros(value)
        raise TypeError(f"{self.name}: money must be a Decimal, not {type(value).__name__}")

    def formfield(self, **kwargs: Any) -> Any:
        defaults: dict[str, Any] = {
            "form_class": forms.DecimalField,
            "max_digits": len(str(int(self.max_value))) + self.decimal_places,
            "decimal_places": self.decimal_places,
            "min_value": Decimal(0),
            "max_value": self.max_value,
        }
        defaults.update(kwargs)
        return super(models.IntegerField, self).formfield(**defaults)


def money_value(amount: Decimal) -> models.Value:
    """An amount for query arithmetic (`F("spend") + money_value(x)`), sent as micros."""
    return models.Value(amount, output_field=MoneyField())
