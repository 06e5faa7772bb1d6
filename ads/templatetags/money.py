"""`{{ amount|money:currency }}`: an amount as people read it, in its currency (€1,234.50,
¥12,000), so no template prints a bare Decimal."""

from decimal import Decimal

from django import template

from ads.money import format_money

register = template.Library()


@register.filter
def money(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else format_money(amount, currency)
