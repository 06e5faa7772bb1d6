"""What the admin pages say about a campaign: its schedule now, why it is not running
and what would change that, its status changes, spend against a budget."""

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from ads.models import Campaign, CampaignStatusChange
from ads.money import format_money
from ads.rules import (
    PauseReason,
    day_bounds,
    left_or_over,
    month_bounds,
    next_schedule_change,
    schedule_allows,
    schedule_summary,
    transition_label,
)
from ads.selectors import last_setting_change


def schedule_status(campaign: Campaign, at: datetime) -> str:
    """'Yes (Mon–Fri 09:00–17:00); closes Fri 27 Nov 17:00 America/New_York (22:00 UTC)'."""
    if campaign.schedule is None:
        return "Yes (no schedule: any time)"
    windows = campaign.schedule.rule_windows()
    zone = campaign.brand.zone
    allowed = schedule_allows(windows, at, zone)
    text = f"{'Yes' if allowed else 'No'} ({schedule_summary(windows)})"
    change = next_schedule_change(windows, at, zone)
    if change is not None:
        text += f"; {'closes' if allowed else 'opens'} {when(change, zone)}"
    return text


def change_label(change: CampaignStatusChange) -> str:
    return transition_label(
        change.old_is_active,
        change.old_pause_reasons,
        change.new_is_active,
        change.new_pause_reasons,
    )


def when(instant: datetime, zone: ZoneInfo) -> str:
    """'Wed 02 Dec 00:00 Europe/Berlin (Tue 01 Dec 23:00 UTC)': the UTC part names its
    day whenever that is not the local one."""
    local, utc = instant.astimezone(zone), instant.astimezone(UTC)
    utc_text = f"{utc:%H:%M}" if utc.date() == local.date() else f"{utc:%a %d %b %H:%M}"
    return f"{local:%a %d %b %H:%M} {zone.key} ({utc_text} UTC)"


def pause_details(campaign: Campaign, at: datetime) -> list[tuple[str, str]]:
    """Each reason a campaign is paused, with the money or time left where it applies:
    [("Brand daily budget exhausted", "spent 100.00 of 100.00 today; resets Sat ...")]."""
    brand = campaign.brand
    zone = brand.zone
    currency = brand.currency
    period = brand.counting_period(at)
    next_day = day_bounds(period.day, zone)[1]
    next_month = month_bounds(period.month, zone)[1]

    def spent(spend: Decimal, budget: Decimal, of: str = "") -> str:
        over = f" ({left_or_over(spend, budget, currency)})" if spend > budget else ""
        return (
            f"spent {format_money(spend, currency)} of {of}{format_money(budget, currency)}{over}"
        )

    own = spent(campaign.spend_today(at), campaign.daily_budget or Decimal(0), "its own ")
    details: dict[str, str] = {
        PauseReason.BRAND_INACTIVE: "the brand's master switch is off",
        PauseReason.BRAND_DAILY_BUDGET: (
            f"{spent(brand.spend_today(at), brand.daily_budget)} today; "
            f"resets {when(next_day, zone)}"
        ),
        PauseReason.BRAND_MONTHLY_BUDGET: (
            f"{spent(brand.spend_this_month(at), brand.monthly_budget)} this month; "
            f"resets {when(next_month, zone)}"
        ),
        PauseReason.CAMPAIGN_DAILY_BUDGET: f"{own} today; resets {when(next_day, zone)}",
    }
    reasons = campaign.pause_reasons
    if PauseReason.DISABLED in reasons:
        switch = last_setting_change(campaign, "is_enabled")
        details[PauseReason.DISABLED] = (
            f"by {switch.actor} on {when(switch.changed_at, zone)}" if switch else "by a person"
        )
    if PauseReason.OUTSIDE_SCHEDULE in reasons and campaign.schedule is not None:
        opens = next_schedule_change(campaign.schedule.rule_windows(), at, zone)
        details[PauseReason.OUTSIDE_SCHEDULE] = (
            f"opens {when(opens, zone)}" if opens else "its schedule never opens"
        )
    return [(PauseReason(code).label, details.get(code, "")) for code in reasons]
