"""The public kernel the services share: locking brands, rolling counters into new
periods, evaluating campaign states set-based and auditing every change, audit rows for
settings, and running a pass brand chunk by brand chunk.

Every service module calls these by their public names; none reaches into another
module's private helpers.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import NamedTuple, TypeVar
from zoneinfo import ZoneInfo

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
    Campaign,
    CampaignStatusChange,
    Schedule,
    ScheduleWindow,
    SettingChange,
    SpendEvent,
)
from ads.money import (
    MICROS_PER_UNIT,
    MoneyField,
    decimal_text,
    format_amount,
    from_micros,
    money_value,
)
from ads.rules import (
    CampaignFacts,
    PauseReason,
    Window,
    day_bounds,
    describe_transition,
    local_date,
    month_bounds,
    month_start,
    pause_reasons,
    schedule_allows,
    transition_label,
)
from ads.services.alerts import raise_alerts
from ads.services.events import emit, state_changes, threshold_events
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
    currency: str
    daily_budget: Decimal
    daily_spend: Decimal
    monthly_budget: Decimal
    monthly_spend: Decimal
    day: date | None = None  # the local day and month the spend figures belong to
    month: date | None = None
    contact_email: str = ""

    @classmethod
    def of(cls, brand: "Brand | _BrandRow") -> "BrandTotals":
        """From a brand, or from the columns of one that evaluation reads."""
        return cls(
            brand_id=brand.pk,
            name=brand.name,
            currency=brand.currency,
            daily_budget=brand.daily_budget,
            daily_spend=brand.current_daily_spend,
            monthly_budget=brand.monthly_budget,
            monthly_spend=brand.current_monthly_spend,
            day=brand.counters_day,
            month=brand.counters_month,
            contact_email=brand.contact_email,
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


def lock_brands(brand_ids: Sequence[int]) -> list[Brand]:
    """Lock the rows of these brands, in primary-key order (so two writers never wait
    for each other in a cycle), and return them as they are now."""
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


def roll_over(brands: Iterable[Brand], *, at: datetime) -> list[int]:
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
            first_day.strftime("%Y-%m"),
            zone_name,
            ids,
        )
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
        .values(by)
        .annotate(
            units=Sum(ExpressionWrapper(F("amount") / unit, output_field=BigIntegerField())),
            rest=Sum(ExpressionWrapper(F("amount") % unit, output_field=BigIntegerField())),
        )
    )
    return {
        row[by]: from_micros(int(row["units"]) * MICROS_PER_UNIT + int(row["rest"])) for row in rows
    }


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
        LEDGER_PAST_LIMIT,
        owner,
        pk,
        name,
        format_amount(total),
        counter,
        period,
        format_amount(MAX_COUNTER),
    )
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
        for campaign in Campaign.objects.filter(brand_id=brand.pk).values("pk", "name"):
            pk = campaign["pk"]
            Campaign.objects.filter(pk=pk).update(
                daily_spend=within_limit(
                    campaigns.get(pk, Decimal(0)),
                    owner="campaign",
                    pk=pk,
                    name=campaign["name"],
                    counter="daily_spend",
                    period=day,
                )
            )
        Brand.objects.filter(pk=brand.pk).update(
            current_daily_spend=_brand_sum(brand, today, counter="current_daily_spend", period=day),
            counters_day=day,
        )
    if month is not None:
        start, end = month_bounds(month, brand.zone)
        this_month = spend.filter(occurred_at__gte=start, occurred_at__lt=end)
        Brand.objects.filter(pk=brand.pk).update(
            current_monthly_spend=_brand_sum(
                brand, this_month, counter="current_monthly_spend", period=month
            ),
            counters_month=month,
        )


def _brand_sum(brand: Brand, spend: QuerySet[SpendEvent], *, counter: str, period: date) -> Decimal:
    """A brand's `spend` summed, for its `counter` in `period`: the sum where the counter
    can hold it, else the limit (logged)."""
    total = exact_sums(spend, "brand_id").get(brand.pk, Decimal(0))
    return within_limit(
        total, owner="brand", pk=brand.pk, name=brand.name, counter=counter, period=period
    )


class _BrandRow(NamedTuple):
    """The columns of a brand that evaluation reads. Its field names are the model's and
    the query asks for exactly them (`values_list(*_BrandRow._fields)`), so no column
    can reach a rule in another's place."""

    pk: int
    name: str
    timezone: str
    currency: str
    is_active: bool
    daily_budget: Decimal
    current_daily_spend: Decimal
    monthly_budget: Decimal
    current_monthly_spend: Decimal
    counters_day: date | None
    counters_month: date | None
    contact_email: str


class _CampaignRow(NamedTuple):
    """The columns of a campaign that evaluation reads (as _BrandRow)."""

    pk: int
    name: str
    brand_id: int
    is_enabled: bool
    is_active: bool
    pause_reasons: tuple[PauseReason, ...]
    daily_budget: Decimal | None
    daily_spend: Decimal
    schedule_id: int | None


@dataclass(frozen=True, slots=True)
class _BrandFacts:
    totals: BrandTotals
    is_active: bool
    zone: str


def _brand_facts(brand_ids: Sequence[int]) -> dict[int, _BrandFacts]:
    rows = Brand.objects.filter(pk__in=brand_ids).values_list(*_BrandRow._fields)
    return {
        brand.pk: _BrandFacts(
            totals=BrandTotals.of(brand),
            is_active=brand.is_active,
            zone=brand.timezone,
        )
        for brand in map(_BrandRow._make, rows)
    }


def evaluate(
    brand_ids: Sequence[int], *, at: datetime, actor: str
) -> tuple[list[CampaignState], dict[int, BrandTotals]]:
    """Apply the state rules to the campaigns of locked brands and write the changes;
    return every campaign's state and each brand's totals.

    Three reads (the brands, their campaigns, the windows of their schedules), then
    per distinct transition one audit insert and one update, whatever the number of
    campaigns. Each schedule is decided once per time zone. New budget alerts are
    recorded (see alerts.raise_alerts).
    """
    brands = _brand_facts(brand_ids)
    query = Campaign.objects.filter(brand_id__in=brand_ids).order_by("pk")
    rows = list(map(_CampaignRow._make, query.values_list(*_CampaignRow._fields)))
    windows = load_windows({row.schedule_id for row in rows if row.schedule_id is not None})
    in_schedule: dict[tuple[int | None, str], bool] = {}
    states: list[CampaignState] = []
    for row in rows:
        brand = brands[row.brand_id]
        schedule_id = row.schedule_id
        if (schedule_id, brand.zone) not in in_schedule:
            in_schedule[schedule_id, brand.zone] = schedule_allows(
                None if schedule_id is None else windows.get(schedule_id, []),
                at,
                ZoneInfo(brand.zone),
            )
        reasons = pause_reasons(
            CampaignFacts(
                is_enabled=row.is_enabled,
                brand_is_active=brand.is_active,
                brand_daily_budget=brand.totals.daily_budget,
                brand_daily_spend=brand.totals.daily_spend,
                brand_monthly_budget=brand.totals.monthly_budget,
                brand_monthly_spend=brand.totals.monthly_spend,
                daily_budget=row.daily_budget,
                daily_spend=row.daily_spend,
                in_schedule=in_schedule[schedule_id, brand.zone],
            )
        )
        states.append(
            CampaignState(
                campaign_id=row.pk,
                name=row.name,
                brand_id=row.brand_id,
                was_active=row.is_active,
                old_reasons=row.pause_reasons,
                is_active=not reasons,
                pause_reasons=reasons,
                daily_spend=row.daily_spend,
                daily_budget=row.daily_budget,
            )
        )
    totals = {pk: facts.totals for pk, facts in brands.items()}
    changed = [s for s in states if s.changed]
    _write_changes(changed, at=at, actor=actor)
    alerts = raise_alerts(totals.values(), at=at)
    emit(
        state_changes(changed, totals, actor=actor) + threshold_events(alerts, totals, actor=actor),
        at=at,
    )
    return states, totals


def load_windows(schedule_ids: Iterable[int]) -> dict[int, list[Window]]:
    """The windows of each schedule, in one query; a schedule without any is absent."""
    ids = sorted(schedule_ids)
    windows: dict[int, list[Window]] = defaultdict(list)
    if ids:
        rows = ScheduleWindow.objects.filter(schedule_id__in=in_ids(ids)).order_by("pk")
        for row in rows.values("schedule_id", "weekdays", "start", "end"):
            windows[row["schedule_id"]].append(
                Window(weekdays=row["weekdays"], start=row["start"], end=row["end"])
            )
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


def audit_text(value: object) -> str:
    """A setting's value as an audit row keeps it: money in its canonical form, None empty."""
    if value is None:
        return ""
    return decimal_text(value) if isinstance(value, Decimal) else str(value)


def audit_row(
    obj: Brand | Campaign | Schedule, field: str, old: str, new: str, *, actor: str, at: datetime
) -> SettingChange:
    """An unsaved audit row of one setting of `obj` that `actor` changed at `at`."""
    return SettingChange(
        changed_at=at,
        actor=actor,
        object_type=obj._meta.model_name or "",
        object_id=obj.pk,
        object_repr=str(obj)[:300],
        field=field,
        old_value=old,
        new_value=new,
    )
