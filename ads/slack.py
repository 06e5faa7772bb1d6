"""Events as the lines people read in Slack: which campaign or brand, why, the figures
in the brand's currency, and a link to its admin page. Pure: an event's payload in,
text out (Slack's mrkdwn, with its three special characters escaped)."""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.urls import reverse

from ads.models import EventType
from ads.money import format_money

# What a Slack endpoint receives unless its person chooses otherwise.
SLACK_DEFAULT_TYPES = (
    EventType.CAMPAIGN_PAUSED,
    EventType.CAMPAIGN_RESUMED,
    EventType.BUDGET_THRESHOLD_REACHED,
)
ICONS: dict[str, str] = {
    EventType.CAMPAIGN_PAUSED: ":double_vertical_bar:",
    EventType.CAMPAIGN_RESUMED: ":arrow_forward:",
    EventType.CAMPAIGN_REASONS_CHANGED: ":arrows_counterclockwise:",
    EventType.BUDGET_THRESHOLD_REACHED: ":warning:",
}


def escape(text: object) -> str:
    """Text as Slack shows it literally (its mrkdwn gives &, < and > a meaning)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    return f"<{url}|{escape(label)}>"


def admin_link(site_url: str, model: str, pk: object, label: str) -> str:
    return link(f"{site_url}{reverse(f'admin:ads_{model}_change', args=[pk])}", label)


def amount(value: object, currency: str) -> str:
    return "none" if value is None else format_money(Decimal(str(value)), currency)


def spent_of(figures: Mapping[str, Any], currency: str) -> str:
    return f"{amount(figures.get('spend'), currency)} of {amount(figures.get('budget'), currency)}"


def brand_figures(brand: Mapping[str, Any]) -> str:
    currency = brand["currency"]
    return (
        f"{escape(brand['name'])} today {spent_of(brand['today'], currency)}, "
        f"this month {spent_of(brand['this_month'], currency)}"
    )


def slack_text(event_type: str, payload: Mapping[str, Any], *, site_url: str) -> str:
    """The message for one event."""
    icon = ICONS.get(event_type, ":information_source:")
    if "campaign" in payload:
        return _campaign_text(icon, payload, site_url)
    if "alert" in payload:
        return _alert_text(icon, payload, site_url)
    return _setting_text(payload, site_url)


def _campaign_text(icon: str, payload: Mapping[str, Any], site_url: str) -> str:
    campaign, brand = payload["campaign"], payload["brand"]
    currency = brand["currency"]
    own = f"{escape(campaign['name'])} today {amount(campaign['daily_spend'], currency)}"
    if campaign.get("daily_budget") is not None:
        own += f" of its {amount(campaign['daily_budget'], currency)}"
    return (
        f"{icon} *{escape(campaign['name'])}* ({escape(brand['name'])}) "
        f"{escape(payload['summary'])}\n"
        f"{own} · {brand_figures(brand)}\n"
        f"{admin_link(site_url, 'campaign', campaign['id'], 'Open the campaign')} "
        f"· by {escape(payload['actor'])}"
    )


def _alert_text(icon: str, payload: Mapping[str, Any], site_url: str) -> str:
    alert, brand = payload["alert"], payload["brand"]
    currency = brand["currency"]
    spent = f"{amount(alert['spend'], currency)} of {amount(alert['budget_amount'], currency)}"
    text = (
        f"{icon} *{escape(brand['name'])}* reached {alert['threshold_percent']}% of its "
        f"{alert['budget']} budget for {alert['period']}: {spent} spent"
    )
    if alert["threshold_percent"] >= 100:
        text += "; its campaigns are paused until the budget resets or is raised"
    return f"{text}\n{admin_link(site_url, 'brand', brand['id'], 'Open the brand')}"


def _setting_text(payload: Mapping[str, Any], site_url: str) -> str:
    change = payload["change"]
    model = change["object"] if change["object"] in ("brand", "campaign", "schedule") else None
    text = (
        f":gear: *{escape(change['name'])}*: {escape(change['field'])} changed from "
        f"{escape(change['old'] or '-')} to {escape(change['new'] or '-')} "
        f"by {escape(payload['actor'])}"
    )
    if model is not None:
        text += f"\n{admin_link(site_url, model, change['object_id'], f'Open the {model}')}"
    return text
