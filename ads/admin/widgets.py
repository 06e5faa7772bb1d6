"""Form widgets of the admin pages: time zones, quarter-hour times, amounts in a currency."""

from decimal import Decimal
from typing import Any

from django import forms

from ads.models import brand_zones
from ads.money import currency_name, minor_units


class TimeZoneInput(forms.TextInput):
    """A text box with the IANA zones as a searchable list: the browser suggests the
    zones containing what has been typed ("Berlin" finds Europe/Berlin)."""

    template_name = "ads/admin/timezone_input.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"list": "iana-zones", "autocomplete": "off", **(attrs or {})})

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["zones"] = sorted(brand_zones())
        return context


QUARTER_HOURS = [f"{minutes // 60:02d}:{minutes % 60:02d}" for minutes in range(0, 24 * 60, 15)]


class QuarterHourSelect(forms.Select):
    """24-hour times on the 15-minute grid, whatever the browser's locale (a time input
    shows AM/PM in an English browser)."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, choices=[(t, t) for t in QUARTER_HOURS])

    def format_value(self, value: Any) -> list[str]:
        if hasattr(value, "strftime"):
            value = value.strftime("%H:%M") if not value.second else value.isoformat()
        shown = super().format_value(value)
        # An off-grid time already stored stays visible (and is refused on save).
        for extra in shown:
            if extra and extra not in QUARTER_HOURS:
                self.choices = [*self.choices, (extra, extra)]
        return shown


class MoneyInput(forms.NumberInput):
    """An amount box; once its currency is known, followed by the currency's code and
    stepping by its minor unit (1 for JPY, 0.01 for EUR, 0.001 for KWD)."""

    template_name = "ads/admin/money_input.html"
    currency: str | None = None

    def in_currency(self, currency: str) -> None:
        self.currency = currency
        self.attrs["step"] = str(Decimal(1).scaleb(-minor_units(currency)))

    def format_value(self, value: Any) -> Any:
        # 10000 rather than 10000.00 for yen, 10.500 for dinars: the currency's own places,
        # when that loses nothing.
        if self.currency is not None and isinstance(value, Decimal) and value.is_finite():
            places = Decimal(1).scaleb(-minor_units(self.currency))
            if value.quantize(places) == value:
                value = value.quantize(places)
        return super().format_value(value)

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        if self.currency is not None:
            context["widget"] |= {
                "currency": self.currency,
                "currency_name": currency_name(self.currency),
            }
        return context


def show_in_currency(field: forms.Field | None, currency: str) -> None:
    """An amount field (when the page has it) reads and steps in `currency`."""
    if field is not None and isinstance(field.widget, MoneyInput):
        field.widget.in_currency(currency)
