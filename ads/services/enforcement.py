"""Campaign states: locking brands, rolling counters into new periods, evaluating
the rules set-based, auditing every change, raising budget alerts.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import TypeVar
from zoneinfo import ZoneInfo

from django.core.mail import send_mail
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import (
    BigIntegerField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

from ads.models import (
    MAX_COUNTER,
    Brand,
    BudgetAlert,
    BudgetKind,
    Campaign,
    CampaignStatusChange,
    ScheduleWindow,
    SpendEvent,
)
from ads.money import MICROS_PER_UNIT, MoneyField, format_money, from_micros, money_value
from ads.rules import (
    CampaignFacts,
    PauseReason,
    Window,
    day_bounds,
    describe_transition,
    left,
    local_date,
    month_bounds,
    month_start,
    pause_reasons,
    schedule_allows,
    transition_label,
)
from ads.sql import chunked, id_set, in_ids

logger = logging.getLogger(__name__)


SPEND_ACTOR = "spend"
# Brands locked and evaluated per transaction in a full pass: bounds how long one
# pass holds brand locks (and so delays spends), and the memory one pass needs.
BRANDS_PER_TRANSACTION = 1000


@dataclass(frozen=True, slots=True)
class CampaignState:
    """A campaign as one evaluation found it (`was_*`) and left it."""

    campaign_id: int
    name: str
    brand_id: int
    was_active: bool
    old_reasons: tuple[PauseReason, ...]
    is_active: bool
    pause_reasons: tuple[PauseReason, ...]
    daily_spend: Decimal
    daily_budget: Decimal | None

    @property
    def changed(self) -> bool:
        return (self.was_active, self.old_reasons) != (self.is_active, self.pause_reasons)

    @property
    def daily_left(self) -> Decimal | None:
        if self.daily_budget is None:
            return None
        return left(self.daily_spend, self.daily_budget)

    @property
    def transition(self) -> str:
        """In codes, for the API and the logs: 'paused (+brand_daily_budget)'."""
        return describe_transition(
            self.was_active, self.old_reasons, self.is_active, self.pause_reasons
        )

    @property
    def label(self) -> str:
        """For people: 'Paused: Brand daily budget exhausted'."""
        return transition_label(
            self.was_active, self.old_reasons, self.is_active, self.pause_reasons
        )


@dataclass(frozen=True, slots=True)
class BrandTotals:
    brand_id: int
    name: str
    daily_budget: Decimal
    daily_spend: Decimal
    monthly_budget: Decimal
    monthly_spend: Decimal
    day: date | None = None  # the local day and month the spend figures belong to
    month: date | None = None
    contact_email: str = ""

    @property
    def daily_left(self) -> Decimal:
        return left(self.daily_spend, self.daily_budget)

    @property
    def monthly_left(self) -> Decimal:
        return left(self.monthly_spend, self.monthly_budget)

    @classmethod
    def of(cls, brand: Brand) -> "BrandTotals":
        return cls(
            brand_id=brand.pk,
            name=brand.name,
            daily_budget=brand.daily_budget,
            daily_spend=brand.current_daily_spend,
            monthly_budget=brand.monthly_budget,
            monthly_spend=brand.current_monthly_spend,
            day=brand.counters_day,
            month=brand.counters_month,
            contact_email=brand.contact_email,
        )


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What a state refresh did: every state change it wrote, and the brands whose
    counters it rolled into a new day or month."""

    changes: tuple[CampaignState, ...]
    rolled_over: tuple[int, ...]


def refresh_campaign_states(
    *, at: datetime, actor: str, brand_ids: Sequence[int] | None = None
) -> RefreshResult:
    """Bring every campaign's `is_active` / `pause_reasons` up to date at `at`.

    Rolls stale counters into the brand's current local day and month first. Writes
    only campaigns whose state changes, each with one audit row naming `actor`. The
    number of queries depends on the number of brands (in chunks of
    BRANDS_PER_TRANSACTION) and of distinct state transitions, not of campaigns.
    """
    if brand_ids is None:  # a periodic pass: archived brands are switched off and left out
        current = Brand.objects.filter(archived_at__isnull=True)
        brand_ids = list(current.order_by("pk").values_list("pk", flat=True))

    def refresh(chunk: Sequence[int]) -> RefreshResult:
        rolled = _roll_over(_lock_brands(chunk), at=at)
        states, _ = _evaluate(chunk, at=at, actor=actor)
        return RefreshResult(tuple(s for s in states if s.changed), tuple(rolled))

    done = in_brand_chunks(sorted(set(brand_ids)), refresh, what=actor)
    return RefreshResult(
        changes=tuple(s for result in done for s in result.changes),
        rolled_over=tuple(pk for result in done for pk in result.rolled_over),
    )


T = TypeVar("T")

BRAND_SKIPPED = '%s: brand %s "%s" skipped, the pass goes on for the others: %s: %s'


def in_brand_chunks(
    brand_ids: Sequence[int], work: Callable[[Sequence[int]], T], *, what: str
) -> list[T]:
    """Run `work` on chunks of BRANDS_PER_TRANSACTION brands, each in a transaction, and
    return what each chunk's run returned.

    One brand's data (a stored time zone this machine does not know, a value no column
    can hold, ...) must not stop a periodic pass for every other brand: a chunk that
    fails is run again brand by brand, and a brand that still fails is logged with the
    error and skipped. Database connection errors are not a brand's doing; they are
    raised, for the task to retry.
    """
    done: list[T] = []
    for chunk in chunked(brand_ids, BRANDS_PER_TRANSACTION):
        try:
            with transaction.atomic():
                done.append(work(chunk))
        except (OperationalError, InterfaceError):
            raise
        except Exception:  # one brand's data, most likely: find which, keep the others
            done += _brand_by_brand(chunk, work, what=what)
    return done


def _brand_by_brand(
    brand_ids: Sequence[int], work: Callable[[Sequence[int]], T], *, what: str
) -> list[T]:
    done: list[T] = []
    for pk in brand_ids:
        try:
            with transaction.atomic():
                done.append(work([pk]))
        except (OperationalError, InterfaceError):
            raise
        except Exception as error:  # logged with its traceback; the pass goes on
            logger.exception(BRAND_SKIPPED, what, pk, _brand_name(pk), type(error).__name__, error)
    return done


def _brand_name(pk: int) -> str:
    return Brand.objects.filter(pk=pk).values_list("name", flat=True).first() or "?"


def _lock_brands(brand_ids: Sequence[int]) -> list[Brand]:
    return list(Brand.objects.select_for_update().filter(pk__in=brand_ids).order_by("pk"))


def _ledger_sum(owner: str, start: datetime, end: datetime) -> Coalesce:
    """Per-row SQL sum of the ledger between start and end, for `owner` in
    ("brand", "campaign") matched to the row being updated."""
    spend = (
        SpendEvent.objects.filter(**{owner: OuterRef("pk")}, occurred_at__gte=start)
        .filter(occurred_at__lt=end)
        .order_by()
        .values(owner)
        .annotate(total=Sum("amount"))
        .values("total")
    )
    return Coalesce(Subquery(spend), money_value(Decimal(0)), output_field=MoneyField())


def behind(marker: str, period: date) -> Q:
    """Rows whose period marker is unset or earlier than `period`: the only ones a
    roll-over may move (counters never go back to an earlier period)."""
    return Q(**{f"{marker}__isnull": True}) | Q(**{f"{marker}__lt": period})


def _roll_over(brands: Iterable[Brand], *, at: datetime) -> list[int]:
    """Move counters of locked brands whose local day or month has changed into the
    current period, and return those brands' ids.

    The new period's counters are set from the ledger, not to zero: a spend dated
    in the new period but recorded before the roll-over (up to 5 minutes early) is
    kept. Counters only move forward: each statement is conditional on the marker
    being earlier, so a repeated or late roll-over, or one whose clock is behind
    another's, changes nothing. One statement per time zone, not per brand.
    """
    stale_days: dict[tuple[str, date], list[int]] = defaultdict(list)
    stale_months: dict[tuple[str, date], list[int]] = defaultdict(list)
    new_periods: dict[int, tuple[Brand, date | None, date | None]] = {}
    for brand in brands:
        today = local_date(at, brand.zone)
        day = month = None
        if brand.counters_day is None or brand.counters_day < today:
            stale_days[brand.timezone, today].append(brand.pk)
            day = today
        if brand.counters_month is None or brand.counters_month < month_start(today):
            stale_months[brand.timezone, month_start(today)].append(brand.pk)
            month = month_start(today)
        if day or month:
            new_periods[brand.pk] = (brand, day, month)
    # A brand whose new period already holds more spend than a counter can is rolled
    # over on its own, its counters kept at the limit; the statements below skip it.
    past = _past_the_limit(new_periods.values())
    for pk in sorted(past):
        _roll_over_to_the_limit(*new_periods[pk])
    for (zone_name, day), all_ids in stale_days.items():
        if not (ids := [pk for pk in all_ids if pk not in past]):
            continue
        start, end = day_bounds(day, ZoneInfo(zone_name))
        Campaign.objects.filter(behind("brand__counters_day", day), brand_id__in=ids).update(
            daily_spend=_ledger_sum("campaign", start, end)
        )
        Brand.objects.filter(behind("counters_day", day), pk__in=ids).update(
            current_daily_spend=_ledger_sum("brand", start, end), counters_day=day
        )
    for (zone_name, first_day), all_ids in stale_months.items():
        if not (ids := [pk for pk in all_ids if pk not in past]):
            continue
        start, end = month_bounds(first_day, ZoneInfo(zone_name))
        Brand.objects.filter(behind("counters_month", first_day), pk__in=ids).update(
            current_monthly_spend=_ledger_sum("brand", start, end), counters_month=first_day
        )
    # The brands are locked, so these lists are exactly the rows the updates moved: one
    # line per brand and period, whoever (spend, reset, enforcement) got there first.
    for (zone_name, day), ids in stale_days.items():
        logger.info("daily counters rolled into %s (%s) for brands %s", day, zone_name, ids)
    for (zone_name, first_day), ids in stale_months.items():
        logger.info(
            "monthly counters rolled into %s (%s) for brands %s",
            first_day.strftime("%Y-%m"), zone_name, ids,
        )  # fmt: skip
    return sorted({pk for ids in [*stale_days.values(), *stale_months.values()] for pk in ids})


def exact_sums(spend: QuerySet[SpendEvent], by: str) -> dict[int, Decimal]:
    """Ledger sums per `by` ("brand_id" or "campaign_id"), exact however large.

    SQL's SUM of the micros fails past 2**63 on SQLite ("integer overflow"), and such a
    sum fits no counter column on PostgreSQL. Whole units and the micros below a unit
    are summed apart, and put together in Python: neither sum can overflow.
    """
    unit = Value(MICROS_PER_UNIT)
    rows = (
        spend.order_by()
        .values_list(by)
        .annotate(
            units=Sum(ExpressionWrapper(F("amount") / unit, output_field=BigIntegerField())),
            rest=Sum(ExpressionWrapper(F("amount") % unit, output_field=BigIntegerField())),
        )
    )
    return {key: from_micros(int(units) * MICROS_PER_UNIT + int(rest)) for key, units, rest in rows}


LEDGER_PAST_LIMIT = (
    '%s %s "%s": the ledger sums to %s for %s on %s, past %s, the most a spend counter '
    "holds; the counter is kept at that limit"
)


def within_limit(
    total: Decimal, *, owner: str, pk: int, name: str, counter: str, period: date
) -> Decimal:
    """`total` if a counter can hold it; else the limit, and the brand or campaign logged.
    A counter at the limit exhausts any budget (MAX_BUDGET is far below it), and no
    spend can be added to it: the safe side."""
    if total <= MAX_COUNTER:
        return total
    logger.error(
        LEDGER_PAST_LIMIT, owner, pk, name, format_money(total), counter, period,
        format_money(MAX_COUNTER),
    )  # fmt: skip
    return MAX_COUNTER


def _past_the_limit(new_periods: Iterable[tuple[Brand, date | None, date | None]]) -> set[int]:
    """Brands whose ledger for the period their counters are rolling into sums past
    the limit of a counter: one query for every zone. A day lies within its month, so
    where both roll over, the month is the one to check."""
    by_bounds: dict[tuple[datetime, datetime], list[int]] = defaultdict(list)
    for brand, day, month in new_periods:
        if month is not None:
            by_bounds[month_bounds(month, brand.zone)].append(brand.pk)
        elif day is not None:
            by_bounds[day_bounds(day, brand.zone)].append(brand.pk)
    if not by_bounds:
        return set()
    spend = SpendEvent.objects.filter(
        reduce(
            or_,
            (
                Q(brand_id__in=ids, occurred_at__gte=start, occurred_at__lt=end)
                for (start, end), ids in by_bounds.items()
            ),
        )
    )
    return {pk for pk, total in exact_sums(spend, "brand_id").items() if total > MAX_COUNTER}


def _roll_over_to_the_limit(brand: Brand, day: date | None, month: date | None) -> None:
    """Roll a locked brand over whose new period's ledger passes a counter's limit:
    each counter is set to its ledger sum where a counter can hold it, else to the
    limit (logged)."""
    spend = SpendEvent.objects.filter(brand_id=brand.pk)
    if day is not None:
        start, end = day_bounds(day, brand.zone)
        today = spend.filter(occurred_at__gte=start, occurred_at__lt=end)
        campaigns = exact_sums(today, "campaign_id")
        for pk, name in Campaign.objects.filter(brand_id=brand.pk).values_list("pk", "name"):
            total = campaigns.get(pk, Decimal(0))
            Campaign.objects.filter(pk=pk).update(
                daily_spend=within_limit(
                    total, owner="campaign", pk=pk, name=name, counter="daily_spend", period=day
                )
            )
        total = exact_sums(today, "brand_id").get(brand.pk, Decimal(0))
        Brand.objects.filter(pk=brand.pk).update(
            current_daily_spend=within_limit(
                total, owner="brand", pk=brand.pk, name=brand.name,
                counter="current_daily_spend", period=day,
            ),
            counters_day=day,
        )  # fmt: skip
    if month is not None:
        start, end = month_bounds(month, brand.zone)
        this_month = spend.filter(occurred_at__gte=start, occurred_at__lt=end)
        total = exact_sums(this_month, "brand_id").get(brand.pk, Decimal(0))
        Brand.objects.filter(pk=brand.pk).update(
            current_monthly_spend=within_limit(
                total, owner="brand", pk=brand.pk, name=brand.name,
                counter="current_monthly_spend", period=month,
            ),
            counters_month=month,
        )  # fmt: skip


_CAMPAIGN_COLUMNS = (
    "pk",
    "name",
    "brand_id",
    "is_enabled",
    "is_active",
    "pause_reasons",
    "daily_budget",
    "daily_spend",
    "schedule_id",
)


@dataclass(frozen=True, slots=True)
class _BrandFacts:
    totals: BrandTotals
    is_active: bool
    zone: str


def _brand_facts(brand_ids: Sequence[int]) -> dict[int, _BrandFacts]:
    facts = {}
    for (
        pk, name, zone, is_active, daily_budget, daily_spend, monthly_budget, monthly_spend,
        day, month, contact,
    ) in Brand.objects.filter(pk__in=brand_ids).values_list(
        "pk", "name", "timezone", "is_active", "daily_budget", "current_daily_spend",
        "monthly_budget", "current_monthly_spend", "counters_day", "counters_month",
        "contact_email",
    ):  # fmt: skip
        totals = BrandTotals(
            brand_id=pk, name=name, daily_budget=daily_budget, daily_spend=daily_spend,
            monthly_budget=monthly_budget, monthly_spend=monthly_spend, day=day, month=month,
            contact_email=contact,
        )  # fmt: skip
        facts[pk] = _BrandFacts(totals=totals, is_active=is_active, zone=zone)
    return facts


def _evaluate(
    brand_ids: Sequence[int], *, at: datetime, actor: str
) -> tuple[list[CampaignState], dict[int, BrandTotals]]:
    """Apply the state rules to the campaigns of locked brands and write the changes.

    Three reads (the brands, their campaigns, the windows of their schedules), then
    per distinct transition one audit insert and one update, whatever the number of
    campaigns. Each schedule is decided once per time zone.
    """
    brands = _brand_facts(brand_ids)
    rows = list(
        Campaign.objects.filter(brand_id__in=brand_ids)
        .order_by("pk")
        .values_list(*_CAMPAIGN_COLUMNS)
    )
    windows = load_windows({row[8] for row in rows if row[8] is not None})
    in_schedule: dict[tuple[int | None, str], bool] = {}
    states: list[CampaignState] = []
    for (
        pk, name, brand_id, is_enabled, was_active, old_reasons, daily_budget, daily_spend,
        schedule_id,
    ) in rows:  # fmt: skip
        brand = brands[brand_id]
        if (schedule_id, brand.zone) not in in_schedule:
            in_schedule[schedule_id, brand.zone] = schedule_allows(
                None if schedule_id is None else windows.get(schedule_id, []),
                at,
                ZoneInfo(brand.zone),
            )
        reasons = pause_reasons(
            CampaignFacts(
                is_enabled=is_enabled,
                brand_is_active=brand.is_active,
                brand_daily_budget=brand.totals.daily_budget,
                brand_daily_spend=brand.totals.daily_spend,
                brand_monthly_budget=brand.totals.monthly_budget,
                brand_monthly_spend=brand.totals.monthly_spend,
                daily_budget=daily_budget,
                daily_spend=daily_spend,
                in_schedule=in_schedule[schedule_id, brand.zone],
            )
        )
        states.append(
            CampaignState(
                campaign_id=pk,
                name=name,
                brand_id=brand_id,
                was_active=was_active,
                old_reasons=old_reasons,
                is_active=not reasons,
                pause_reasons=reasons,
                daily_spend=daily_spend,
                daily_budget=daily_budget,
            )
        )
    totals = {pk: facts.totals for pk, facts in brands.items()}
    _write_changes([s for s in states if s.changed], at=at, actor=actor)
    _raise_alerts(totals.values(), at=at)
    return states, totals


ALERT_THRESHOLDS = (50, 80, 100)  # percent of a budget


def _raise_alerts(totals: Iterable[BrandTotals], *, at: datetime) -> list[BudgetAlert]:
    """Record each threshold of the budget in force that a brand's spend has reached in
    the current period, once: a crossing is (brand, kind, threshold, period, budget), the
    alert's unique key. A budget raised and exhausted again is a new crossing (its pause
    is announced too), as is a budget lowered under the spend; a budget set back to one
    already crossed this period is not. New alerts are logged, and e-mailed to the
    brand's contact after the transaction commits."""
    reached: dict[tuple[int, str, int, date, Decimal], BudgetAlert] = {}
    for brand in totals:
        for kind, spend, budget, period in (
            (BudgetKind.DAILY, brand.daily_spend, brand.daily_budget, brand.day),
            (BudgetKind.MONTHLY, brand.monthly_spend, brand.monthly_budget, brand.month),
        ):
            if budget <= 0 or period is None:
                continue  # a zero budget allows nothing: there is no share to cross
            for threshold in ALERT_THRESHOLDS:
                if spend * 100 >= budget * threshold:
                    reached[brand.brand_id, kind, threshold, period, budget] = BudgetAlert(
                        brand_id=brand.brand_id, budget_kind=kind, threshold=threshold,
                        period=period, created_at=at, spend=spend, budget=budget,
                        emailed_to=brand.contact_email,
                    )  # fmt: skip
    if not reached:
        return []
    known = set(
        BudgetAlert.objects.filter(
            brand_id__in={key[0] for key in reached}, period__in={key[3] for key in reached}
        ).values_list("brand_id", "budget_kind", "threshold", "period", "budget")
    )
    new = [alert for key, alert in reached.items() if key not in known]
    BudgetAlert.objects.bulk_create(new, ignore_conflicts=True)
    names = {brand.brand_id: brand.name for brand in totals}
    for alert in new:
        logger.warning(
            "budget alert: %s reached %d%% of its %s budget for %s (%s of %s)",
            names[alert.brand_id], alert.threshold, alert.budget_kind, alert.period,
            format_money(alert.spend), format_money(alert.budget),
        )  # fmt: skip
    mails = [(names[a.brand_id], a) for a in new if a.emailed_to]
    if mails:

        def send_after_commit() -> None:  # a named function: on_commit logs its name
            _send_alert_mails(mails)

        transaction.on_commit(send_after_commit)
    return new


def _send_alert_mails(mails: Sequence[tuple[str, BudgetAlert]]) -> None:
    """Mail each new alert. The spend is committed by now: a mail server that fails
    must not fail it, so each failure is logged and the next mail still goes out (the
    alert itself stays on the dashboard)."""
    for brand_name, alert in mails:
        paused = alert.threshold >= 100
        subject = f"{brand_name}: {alert.threshold} % of the {alert.budget_kind} budget spent"
        try:
            send_mail(
                subject=subject,
                message=(
                    f"{brand_name} has spent {format_money(alert.spend)} of its "
                    f"{alert.budget_kind} budget of {format_money(alert.budget)} for "
                    f"{alert.period}.\n"
                    + ("Its campaigns are paused until the budget resets or is raised.\n"
                       if paused else "")
                ),
                from_email=None,
                recipient_list=[alert.emailed_to],
            )  # fmt: skip
        except Exception as error:  # any mail failure: log it, keep going
            logger.error(
                "budget alert mail to %s failed (%s: %s); the alert is on the dashboard",
                alert.emailed_to, type(error).__name__, error,
            )  # fmt: skip


def load_windows(schedule_ids: Iterable[int]) -> dict[int, list[Window]]:
    """The windows of each schedule, in one query; a schedule without any is absent."""
    ids = sorted(schedule_ids)
    windows: dict[int, list[Window]] = defaultdict(list)
    if ids:
        rows = ScheduleWindow.objects.filter(schedule_id__in=in_ids(ids)).order_by("pk")
        for schedule_id, weekdays, start, end in rows.values_list(
            "schedule_id", "weekdays", "start", "end"
        ):
            windows[schedule_id].append(Window(weekdays=weekdays, start=start, end=end))
    return windows


def _write_changes(changed: Sequence[CampaignState], *, at: datetime, actor: str) -> None:
    groups: dict[tuple[bool, tuple[PauseReason, ...], bool, tuple[PauseReason, ...]], list[int]]
    groups = defaultdict(list)
    for state in changed:
        key = (state.was_active, state.old_reasons, state.is_active, state.pause_reasons)
        groups[key].append(state.campaign_id)
        logger.info(
            "campaign %s (%s) %s by %s", state.campaign_id, state.name, state.transition, actor
        )
    audit = connection.ops.quote_name(CampaignStatusChange._meta.db_table)
    campaigns = connection.ops.quote_name(Campaign._meta.db_table)
    for (was_active, old_reasons, is_active, reasons), ids in groups.items():
        ids_sql, ids_params = id_set(ids)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {audit} (campaign_id, changed_at, old_is_active, new_is_active,"
                " old_pause_reasons, new_pause_reasons, reason, actor)"
                f" SELECT id, %s, %s, %s, %s, %s, %s, %s FROM {campaigns} WHERE id IN ({ids_sql})",
                [
                    connection.ops.adapt_datetimefield_value(at),
                    was_active,
                    is_active,
                    ",".join(old_reasons),
                    ",".join(reasons),
                    describe_transition(was_active, old_reasons, is_active, reasons),
                    actor[:150],
                    *ids_params,
                ],
            )
        Campaign.objects.filter(pk__in=in_ids(ids)).update(
            is_active=is_active, pause_reasons=reasons
        )
