"""The admin's front page, "Today at a glance": which brands are near or over budget,
what paused lately and why, spend per hour today, and whether the periodic tasks ran.
The rows come from `ads.selectors`; this module only lays them out."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ads.money import currency_name, format_money
from ads.selectors import (
    brands_near_budget,
    hourly_spend,
    periodic_task_runs,
    recent_alerts,
    recent_pauses,
)


@dataclass(frozen=True, slots=True)
class Bar:
    hour: int
    amount: Decimal
    currency: str
    x: int
    y: int
    height: int
    current: bool

    @property
    def label(self) -> str:
        return (
            f"{self.hour:02d}:00–{self.hour:02d}:59 UTC: {format_money(self.amount, self.currency)}"
        )


@dataclass(frozen=True, slots=True)
class HourChart:
    """One currency's spend per hour today: its own bars, scale and total. Each
    currency has a chart of its own, since yen and euros cannot be added or compared."""

    currency: str
    bars: tuple[Bar, ...]
    top: Decimal  # the tallest bar, the chart's scale
    total: Decimal

    @property
    def name(self) -> str:
        return currency_name(self.currency)


CHART_HEIGHT = 120
BAR_WIDTH = 20


def hour_chart(currency: str, hourly: Mapping[int, Decimal], at: datetime) -> HourChart:
    """The 24 bars of one currency's spend per hour of today (UTC), scaled to its tallest."""
    top = max(hourly.values(), default=Decimal(0))
    bars = []
    for hour in range(24):
        amount = hourly.get(hour, Decimal(0))
        height = int(amount / top * CHART_HEIGHT) if top else 0
        if amount and not height:
            height = 1  # a sliver, so small spend is still visible
        bars.append(
            Bar(
                hour,
                amount,
                currency,
                hour * BAR_WIDTH,
                CHART_HEIGHT - height,
                height,
                hour == at.hour,
            )
        )
    return HourChart(currency, tuple(bars), top, sum(hourly.values(), Decimal(0)))


def spend_per_hour(at: datetime) -> list[HourChart]:
    """A chart per currency that has spend today (UTC), by currency code."""
    return [
        hour_chart(currency, hourly, at) for currency, hourly in sorted(hourly_spend(at).items())
    ]


def dashboard(at: datetime, *, can_view: Callable[[str], bool]) -> dict[str, object]:
    """The front page's sections; each only for a person allowed to see its rows."""
    context: dict[str, object] = {"now": at, "near_budget": brands_near_budget(at)}
    if can_view("ads.view_campaignstatuschange"):
        context["recent_pauses"] = recent_pauses(at)
    if can_view("ads.view_budgetalert"):
        context["recent_alerts"] = recent_alerts(at)
    if can_view("ads.view_spendevent"):
        context |= {
            "hour_charts": spend_per_hour(at),
            "chart_height": CHART_HEIGHT,
            "chart_width": 24 * BAR_WIDTH,
        }
    if can_view("django_celery_beat.view_periodictask"):
        context["periodic_tasks"] = periodic_task_runs()
    return context
