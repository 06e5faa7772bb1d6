"""Pure decisions: a campaign's state from data and a moment; brands' local periods.

Nothing here reads the database or the clock, so every rule can be tested with plain
values and reused by the services, the admin and (later) the API.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import models

from ads.money import format_money


class PauseReason(models.TextChoices):
    """Why a campaign may not serve. Declaration order is the order people read them in."""

    DISABLED = "disabled", "Disabled by a person"
    BRAND_INACTIVE = "brand_inactive", "Brand switched off"
    BRAND_MONTHLY_BUDGET = "brand_monthly_budget", "Brand monthly budget exhausted"
    BRAND_DAILY_BUDGET = "brand_daily_budget", "Brand daily budget exhausted"
    CAMPAIGN_DAILY_BUDGET = "campaign_daily_budget", "Campaign daily budget exhausted"
    OUTSIDE_SCHEDULE = "outside_schedule", "Outside its schedule"


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """Everything the state rule needs about one campaign and its brand, now."""

    is_enabled: bool
    brand_is_active: bool
    brand_daily_budget: Decimal
    brand_daily_spend: Decimal
    brand_monthly_budget: Decimal
    brand_monthly_spend: Decimal
    daily_budget: Decimal | None
    daily_spend: Decimal
    in_schedule: bool


def exhausted(spend: Decimal, budget: Decimal) -> bool:
    """A budget is used up once spend reaches it; a budget of 0 allows nothing."""
    return spend >= budget


def left(spend: Decimal, budget: Decimal) -> Decimal:
    """What a budget still allows; never negative, though spend can pass the budget."""
    return max(budget - spend, Decimal(0))


def over(spend: Decimal, budget: Decimal) -> Decimal:
    """How far spend has passed a budget (0 when it has not): the spend of a paused
    campaign is still recorded, and a budget can be lowered below the spend."""
    return max(spend - budget, Decimal(0))


def left_or_over(spend: Decimal, budget: Decimal, currency: str) -> str:
    """For people: '€3.00 left' under the budget, '€5.00 over' past it ('€0.00 left' at
    it)."""
    if spend > budget:
        return f"{format_money(over(spend, budget), currency)} over"
    return f"{format_money(left(spend, budget), currency)} left"


def reasons_label(reasons: Iterable[str]) -> str:
    """'Brand daily budget exhausted, Outside its schedule', or '-' for none."""
    return ", ".join(PauseReason(code).label for code in reasons) or "-"


def pause_reasons(facts: CampaignFacts) -> tuple[PauseReason, ...]:
    """Every rule that keeps the campaign from serving; empty means it may serve."""
    failing = {
        PauseReason.DISABLED: not facts.is_enabled,
        PauseReason.BRAND_INACTIVE: not facts.brand_is_active,
        PauseReason.BRAND_MONTHLY_BUDGET: exhausted(
            facts.brand_monthly_spend, facts.brand_monthly_budget
        ),
        PauseReason.BRAND_DAILY_BUDGET: exhausted(
            facts.brand_daily_spend, facts.brand_daily_budget
        ),
        PauseReason.CAMPAIGN_DAILY_BUDGET: facts.daily_budget is not None
        and exhausted(facts.daily_spend, facts.daily_budget),
        PauseReason.OUTSIDE_SCHEDULE: not facts.in_schedule,
    }
    return tuple(reason for reason in PauseReason if failing[reason])


def local_date(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


@dataclass(frozen=True, slots=True)
class CountingPeriod:
    """The brand's local day, and the first day of its local month, that spend counts in."""

    day: date
    month: date

    def counts_today(self, spent_on: date) -> bool:
        """Does spend dated on local day `spent_on` count in this day's counters?"""
        return spent_on == self.day

    def counts_this_month(self, spent_on: date) -> bool:
        """Does spend dated on local day `spent_on` count in this month's counter?"""
        return month_start(spent_on) == self.month


def counting_period(at: datetime, zone: ZoneInfo, counters_day: date | None) -> CountingPeriod:
    """The local day and month spend recorded at `at` counts in: `at`'s local day, or the
    day the brand's counters already belong to when that is later (a worker whose clock
    is behind, or one that read the time before waiting for the brand's lock, must not
    count in yesterday)."""
    today = local_date(at, zone)
    day = max(today, counters_day) if counters_day else today
    return CountingPeriod(day=day, month=month_start(day))


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (in UTC) of a local calendar day.

    fold=0 picks the earlier of a repeated midnight; for a midnight skipped by DST it
    maps to the moment the clock jumps, which is the first instant of that day.
    """
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a local day: 23, 24 or 25 hours long."""
    return day_start(day, zone), day_start(day + timedelta(days=1), zone)


def month_bounds(first_day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local month that begins on `first_day`."""
    next_month = (first_day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day_start(first_day, zone), day_start(next_month, zone)


def describe_transition(
    old_active: bool,
    old_reasons: tuple[PauseReason, ...],
    new_active: bool,
    new_reasons: tuple[PauseReason, ...],
) -> str:
    """'paused (+brand_daily_budget)', 'resumed (-brand_daily_budget)', ..."""
    if new_active != old_active:
        head = "resumed" if new_active else "paused"
    else:
        head = "running" if new_active else "still paused"
    changes = [f"+{r}" for r in new_reasons if r not in old_reasons]
    changes += [f"-{r}" for r in old_reasons if r not in new_reasons]
    return f"{head} ({', '.join(changes)})" if changes else head


def transition_label(
    old_active: bool,
    old_reasons: Sequence[str],
    new_active: bool,
    new_reasons: Sequence[str],
) -> str:
    """A state change as people read it, in the words of `PauseReason`'s labels:
    'Paused: Brand daily budget exhausted', 'Resumed (was: Outside its schedule)',
    'Still paused: now also Brand switched off; no longer Outside its schedule'."""
    added = [PauseReason(r).label for r in new_reasons if r not in old_reasons]
    removed = [PauseReason(r).label for r in old_reasons if r not in new_reasons]
    if new_active and not old_active:
        return f"Resumed (was: {', '.join(removed)})" if removed else "Resumed"
    if not new_active and (old_active or not old_reasons):  # a new campaign has no reasons
        return f"Paused: {', '.join(added)}" if added else "Paused"
    head = "Running" if new_active else "Still paused"
    parts = ([f"now also {', '.join(added)}"] if added else []) + (
        [f"no longer {', '.join(removed)}"] if removed else []
    )
    return f"{head}: {'; '.join(parts)}" if parts else head


MONTHLY_BELOW_DAILY = (
    "The monthly budget ({monthly}) is below the daily budget ({daily}): the monthly "
    "budget binds first, so the brand cannot spend more than {monthly} this month, "
    "however the days go."
)
CAMPAIGN_ABOVE_BRAND = (
    "{campaign}: its own daily budget ({own}) is above the brand's daily budget "
    "({daily}): the brand's budget binds first, so it can spend at most {daily} a day, "
    "less when the brand's other campaigns spend."
)


def budget_warnings(
    *,
    daily: Decimal,
    monthly: Decimal,
    campaigns: Iterable[tuple[str, Decimal | None]] = (),
    format_amount: Callable[[Decimal], str] = str,
) -> list[str]:
    """Budgets that are allowed but probably a mistake, and which one binds first."""
    warnings = []
    if monthly < daily:
        warnings.append(
            MONTHLY_BELOW_DAILY.format(monthly=format_amount(monthly), daily=format_amount(daily))
        )
    for name, own in campaigns:
        if own is not None and own > daily:
            warnings.append(
                CAMPAIGN_ABOVE_BRAND.format(
                    campaign=name, own=format_amount(own), daily=format_amount(daily)
                )
            )
    return warnings


# --- Dayparting -----------------------------------------------------------------------

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
EVERY_DAY = 0b1111111  # bit n is weekday n, Monday = 0, as datetime.weekday()
GRID = timedelta(minutes=15)
# A schedule repeats every week, so any change happens within a week and a day
# (the day covers an overnight window and a DST jump).
LOOKAHEAD = timedelta(days=8)


def weekday_mask(days: Iterable[int]) -> int:
    """The bit mask of weekday numbers (Monday = 0)."""
    mask = 0
    for day in days:
        mask |= 1 << day
    return mask


def weekdays_of(mask: int) -> list[int]:
    return [day for day in range(7) if mask & (1 << day)]


def weekdays_label(mask: int) -> str:
    """'Every day', 'Mon–Fri', 'Sat–Sun', 'Mon, Wed, Fri'."""
    if mask & EVERY_DAY == EVERY_DAY:
        return "Every day"
    runs: list[list[int]] = []
    for day in weekdays_of(mask):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = [[WEEKDAY_NAMES[day] for day in run] for run in runs]
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}–{run[-1]}" for run in names)


@dataclass(frozen=True, slots=True)
class Window:
    """Weekdays and a half-open wall-clock interval [start, end).

    end <= start runs overnight into the next day (Fri 22:00–02:00 ends Saturday
    02:00); start == end is the 24 hours from start.
    """

    weekdays: int
    start: time
    end: time

    @property
    def label(self) -> str:
        span = f"{self.start:%H:%M}–{self.end:%H:%M}"
        if self.start == self.end:
            span += " (24 h)"
        return f"{weekdays_label(self.weekdays)} {span}"

    def contains(self, weekday: int, clock: time) -> bool:
        """Is the wall-clock moment (weekday, clock) inside the window?"""
        starts_today = bool(self.weekdays & (1 << weekday)) and clock >= self.start
        if self.start < self.end:
            return starts_today and clock < self.end
        started_yesterday = bool(self.weekdays & (1 << (weekday - 1) % 7)) and clock < self.end
        return starts_today or started_yesterday


def schedule_summary(windows: Sequence[Window]) -> str:
    """'Mon–Fri 09:00–17:00; Sat 22:00–02:00', or 'never' for no window."""
    return "; ".join(w.label for w in windows) or "never"


def schedule_allows(windows: Sequence[Window] | None, at: datetime, zone: ZoneInfo) -> bool:
    """May a campaign with this schedule serve at instant `at`, on the wall clock of
    `zone`? None (no schedule) allows any time; a schedule without windows, none.

    The wall clock decides: on a spring-forward day the skipped times never occur,
    and in the repeated fall-back hour both instants read the same clock.
    """
    if windows is None:
        return True
    local = at.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    return any(w.contains(local.weekday(), clock) for w in windows)


def next_schedule_change(
    windows: Sequence[Window] | None, after: datetime, zone: ZoneInfo
) -> datetime | None:
    """The first instant after `after` at which schedule_allows() flips, in UTC, or
    None when it never does (no schedule, or a schedule open or closed all week).

    Windows sit on the 15-minute grid and every UTC offset in use is a multiple of 15
    minutes, so wall-clock boundaries and DST jumps all fall on UTC quarter hours:
    checking those is exact, at most 8 days × 96 checks.
    """
    if windows is None:
        return None
    now_allowed = schedule_allows(windows, after, zone)
    after_utc = after.astimezone(UTC)
    midnight = after_utc.replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = midnight + GRID * (1 + (after_utc - midnight) // GRID)
    while candidate <= after_utc + LOOKAHEAD:
        if schedule_allows(windows, candidate, zone) != now_allowed:
            return candidate
        candidate += GRID
    return None


# --- How spend stands against a budget (for people) ------------------------------------

WARN_SHARE = Decimal("0.75")
PACE_TOLERANCE = Decimal("0.10")  # ten percentage points either side of the clock


class Band(models.TextChoices):
    """Colour band of a budget bar."""

    OK = "ok", "under 75 %"
    WARN = "warn", "75–99 %"
    EXHAUSTED = "exhausted", "exhausted"


class Pacing(models.TextChoices):
    ON_PACE = "on_pace", "on pace"
    AHEAD = "ahead", "ahead"
    BEHIND = "behind", "behind"
    EXHAUSTED = "exhausted", "exhausted"


def spent_share(spend: Decimal, budget: Decimal) -> Decimal:
    """Spend as a share of the budget; a budget of 0 counts as fully spent."""
    return spend / budget if budget > 0 else Decimal(1)


def spend_of_budget(spend: Decimal, budget: Decimal, currency: str) -> str:
    """For people: '€82.00 / €100.00 (82 %)', '¥100 / ¥100 (exhausted)' or
    '€55.00 / €50.00 (€5.00 over)'."""
    if spend > budget:
        share = left_or_over(spend, budget, currency)
    elif exhausted(spend, budget):
        share = "exhausted"
    else:
        share = f"{int(spent_share(spend, budget) * 100)} %"
    return f"{format_money(spend, currency)} / {format_money(budget, currency)} ({share})"


def band(spend: Decimal, budget: Decimal) -> Band:
    if exhausted(spend, budget):
        return Band.EXHAUSTED
    return Band.WARN if spent_share(spend, budget) >= WARN_SHARE else Band.OK


def elapsed_share(start: datetime, end: datetime, at: datetime) -> Decimal:
    """How much of [start, end) has passed at `at`, from 0 to 1."""
    total = (end - start).total_seconds()
    passed = min(max((at - start).total_seconds(), 0.0), total)
    return Decimal(str(round(passed / total, 6)))


def pacing(spend: Decimal, budget: Decimal, elapsed: Decimal) -> Pacing:
    """Spend against the elapsed share of the period: a brand that has spent 60 % of
    its daily budget by noon is ahead; within ten points of the clock is on pace."""
    if exhausted(spend, budget):
        return Pacing.EXHAUSTED
    gap = spent_share(spend, budget) - elapsed
    if gap > PACE_TOLERANCE:
        return Pacing.AHEAD
    if gap < -PACE_TOLERANCE:
        return Pacing.BEHIND
    return Pacing.ON_PACE
