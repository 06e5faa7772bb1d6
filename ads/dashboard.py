"""Read-only views of the data for people: budget standing, recent pauses, spend per
hour, periodic task runs. Used by the admin; nothing here writes."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django_celery_beat.models import PeriodicTask

from ads.models import Brand, BudgetAlert, Campaign, CampaignStatusChange, SettingChange, SpendEvent
from ads.money import format_money
from ads.rules import (
    Band,
    Pacing,
    PauseReason,
    band,
    day_bounds,
    elapsed_share,
    left,
    left_or_over,
    month_bounds,
    month_start,
    next_schedule_change,
    over,
    pacing,
    reasons_label,
    spent_share,
)


@dataclass(frozen=True, slots=True)
class Standing:
    """How one budget of a brand stands now."""

    spend: Decimal
    budget: Decimal
    band: Band
    pacing: Pacing

    @property
    def percent(self) -> int:
        return min(int(spent_share(self.spend, self.budget) * 100), 100)

    @property
    def left(self) -> Decimal:
        return left(self.spend, self.budget)

    @property
    def over(self) -> Decimal:
        return over(self.spend, self.budget)

    @property
    def left_text(self) -> str:
        return left_or_over(self.spend, self.budget)

    @property
    def text(self) -> str:
        if self.over:
            share = f"{format_money(self.over)} over"
        else:
            share = "exhausted" if self.band == Band.EXHAUSTED else f"{self.percent} %"
        return f"{format_money(self.spend)} / {format_money(self.budget)} ({share})"


def standing(brand: Brand, at: datetime) -> tuple[Standing, Standing]:
    """Today's and this month's standing of a brand, paced on its own clock.

    Counters that still belong to an earlier period (no roll-over yet) read as zero.
    """
    zone = brand.zone
    today = brand.counting_day(at)
    day_spend, month_spend = brand.spend_today(at), brand.spend_this_month(at)
    day_elapsed = elapsed_share(*day_bounds(today, zone), at)
    month_elapsed = elapsed_share(*month_bounds(month_start(today), zone), at)
    return (
        Standing(
            day_spend,
            brand.daily_budget,
            band(day_spend, brand.daily_budget),
            pacing(day_spend, brand.daily_budget, day_elapsed),
        ),
        Standing(
            month_spend,
            brand.monthly_budget,
            band(month_spend, brand.monthly_budget),
            pacing(month_spend, brand.monthly_budget, month_elapsed),
        ),
    )


def with_campaign_counts(brands: QuerySet[Brand]) -> QuerySet[Brand]:
    return brands.annotate(
        running=Count("campaigns", filter=Q(campaigns__is_active=True)),
        paused=Count("campaigns", filter=Q(campaigns__is_active=False)),
    )


@dataclass(frozen=True, slots=True)
class BrandLine:
    brand: Brand
    today: Standing
    month: Standing
    local_time: datetime

    @property
    def local_time_text(self) -> str:
        """The brand's wall clock, formatted here: a template's date filter would turn
        it back into the server's zone."""
        return f"{self.local_time:%a %H:%M}"


def brands_near_budget(at: datetime) -> list[BrandLine]:
    """Active brands at 75 % or more of a budget, the most spent first."""
    lines = []
    brands = Brand.objects.filter(is_active=True, archived_at__isnull=True)
    for brand in with_campaign_counts(brands):
        today, month = standing(brand, at)
        if today.band != Band.OK or month.band != Band.OK:
            lines.append(BrandLine(brand, today, month, at.astimezone(brand.zone)))
    return sorted(lines, key=lambda line: -max(line.today.percent, line.month.percent))


@dataclass(frozen=True, slots=True)
class PauseLine:
    """A campaign that stopped running lately: why it stopped, and how it stands now
    (it may have resumed since)."""

    change: CampaignStatusChange

    @property
    def why(self) -> str:
        return reasons_label(
            r for r in self.change.new_pause_reasons if r not in self.change.old_pause_reasons
        )

    @property
    def now(self) -> str:
        campaign = self.change.campaign
        if campaign.is_active:
            return "Running again"
        return f"Paused: {reasons_label(campaign.pause_reasons)}"


def recent_pauses(at: datetime, hours: int = 24) -> list[PauseLine]:
    """Campaigns that stopped running in the last `hours`, newest first."""
    changes = CampaignStatusChange.objects.filter(
        changed_at__gte=at - timedelta(hours=hours),
        old_is_active=True,
        new_is_active=False,
        campaign__archived_at__isnull=True,
        campaign__brand__archived_at__isnull=True,
    ).select_related("campaign", "campaign__brand")[:50]
    return [PauseLine(change) for change in changes]


def recent_alerts(at: datetime, hours: int = 24) -> QuerySet[BudgetAlert]:
    return BudgetAlert.objects.filter(
        created_at__gte=at - timedelta(hours=hours), brand__archived_at__isnull=True
    ).select_related("brand")[:50]


@dataclass(frozen=True, slots=True)
class Bar:
    hour: int
    amount: Decimal
    x: int
    y: int
    height: int
    current: bool

    @property
    def label(self) -> str:
        return f"{self.hour:02d}:00–{self.hour:02d}:59 UTC: {format_money(self.amount)}"


CHART_HEIGHT = 120
BAR_WIDTH = 20


def spend_per_hour(at: datetime) -> tuple[list[Bar], Decimal]:
    """Spend of every brand in each hour of today (UTC), as bars of an SVG chart, and
    the largest hourly amount (the chart's scale)."""
    start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    hourly = {
        row["hour"].hour: row["total"]
        for row in SpendEvent.objects.filter(
            occurred_at__gte=start, occurred_at__lt=start + timedelta(days=1)
        )
        .order_by()
        .annotate(hour=TruncHour("occurred_at"))
        .values("hour")
        .annotate(total=Sum("amount"))
    }
    top = max(hourly.values(), default=Decimal(0))
    bars = []
    for hour in range(24):
        amount = hourly.get(hour, Decimal(0))
        height = int(amount / top * CHART_HEIGHT) if top else 0
        if amount and not height:
            height = 1  # a sliver, so small spend is still visible
        bars.append(
            Bar(hour, amount, hour * BAR_WIDTH, CHART_HEIGHT - height, height, hour == at.hour)
        )
    return bars, top


def periodic_task_runs() -> Sequence[PeriodicTask]:
    return list(PeriodicTask.objects.select_related("crontab", "interval").order_by("name"))


def dashboard(at: datetime, *, can_view: Callable[[str], bool]) -> dict[str, object]:
    """The front page's sections; each only for a person allowed to see its rows."""
    context: dict[str, object] = {"now": at, "near_budget": brands_near_budget(at)}
    if can_view("ads.view_campaignstatuschange"):
        context["recent_pauses"] = recent_pauses(at)
    if can_view("ads.view_budgetalert"):
        context["recent_alerts"] = recent_alerts(at)
    if can_view("ads.view_spendevent"):
        bars, top = spend_per_hour(at)
        context |= {
            "hour_bars": bars,
            "hour_top": top,
            "hour_total": sum((bar.amount for bar in bars), Decimal(0)),
            "chart_height": CHART_HEIGHT,
            "chart_width": 24 * BAR_WIDTH,
        }
    if can_view("django_celery_beat.view_periodictask"):
        context["periodic_tasks"] = periodic_task_runs()
    return context


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
    today = brand.counting_day(at)
    next_day = day_bounds(today, zone)[1]
    next_month = month_bounds(month_start(today), zone)[1]
    day, month = standing(brand, at)
    own = Standing(
        campaign.spend_today(at),
        campaign.daily_budget or Decimal(0),
        Band.OK,
        Pacing.ON_PACE,
    )

    def spent(s: Standing, of: str) -> str:
        over = f" ({s.left_text})" if s.over else ""
        return f"spent {format_money(s.spend)} of {of}{format_money(s.budget)}{over}"

    details: dict[str, str] = {
        PauseReason.BRAND_INACTIVE: "the brand's master switch is off",
        PauseReason.BRAND_DAILY_BUDGET: (f"{spent(day, '')} today; resets {when(next_day, zone)}"),
        PauseReason.BRAND_MONTHLY_BUDGET: (
            f"{spent(month, '')} this month; resets {when(next_month, zone)}"
        ),
        PauseReason.CAMPAIGN_DAILY_BUDGET: (
            f"{spent(own, 'its own ')} today; resets {when(next_day, zone)}"
        ),
    }
    reasons = campaign.pause_reasons
    if PauseReason.DISABLED in reasons:
        switch = SettingChange.objects.filter(
            object_type="campaign", object_id=campaign.pk, field="is_enabled"
        ).first()
        details[PauseReason.DISABLED] = (
            f"by {switch.actor} on {when(switch.changed_at, zone)}" if switch else "by a person"
        )
    if PauseReason.OUTSIDE_SCHEDULE in reasons and campaign.schedule is not None:
        opens = next_schedule_change(campaign.schedule.rule_windows(), at, zone)
        details[PauseReason.OUTSIDE_SCHEDULE] = (
            f"opens {when(opens, zone)}" if opens else "its schedule never opens"
        )
    return [(PauseReason(code).label, details.get(code, "")) for code in reasons]
