"""Every change of budget state: spend, campaign states, period roll-over, admin edits.

Concurrency rule: every writer locks the rows of the brands it touches first
(`select_for_update`, in primary-key order), then works on their campaigns. Spends,
enforcement passes and admin saves of one brand therefore run one after the other and
never act on stale counters; different brands proceed in parallel. On SQLite, whose
transactions are IMMEDIATE (see settings), the database lock does the same.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Literal
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ads.models import (
    Brand,
    BudgetAlert,
    BudgetKind,
    Campaign,
    CampaignStatusChange,
    Schedule,
    ScheduleWindow,
    SettingChange,
    SpendEvent,
    SpendSource,
)
from ads.money import MoneyField, canonical, format_money, money_value
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
    schedule_summary,
)
from ads.sql import chunked, id_set, in_ids, in_texts
from ads.validation import (
    CAMPAIGN_UNKNOWN,
    KEY_CONFLICT,
    describe,
    invalid,
    parse_amount,
    parse_id,
    parse_idempotency_key,
    parse_occurred_at,
    shown,
)

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
        return max(self.daily_budget - self.daily_spend, Decimal(0))

    @property
    def transition(self) -> str:
        return describe_transition(
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
        return max(self.daily_budget - self.daily_spend, Decimal(0))

    @property
    def monthly_left(self) -> Decimal:
        return max(self.monthly_budget - self.monthly_spend, Decimal(0))

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


@dataclass(frozen=True, slots=True)
class SpendResult:
    event: SpendEvent
    created: bool  # False: the idempotency key was already recorded; nothing changed
    counted_today: bool
    counted_this_month: bool
    campaign: CampaignState
    brand: BrandTotals
    changes: tuple[CampaignState, ...]


def record_spend(
    campaign_id: object,
    amount: object,
    *,
    occurred_at: object = None,
    idempotency_key: object = None,
    source: str = SpendSource.CLI,
    at: datetime | None = None,
) -> SpendResult:
    """Record one spend in the ledger, move the counters, and enforce at once.

    Arguments may be untrusted (strings from the command line, JSON from a task); each
    is validated before anything is written. `at` is when the spend is recorded
    (default: now). Raises `ValidationError` naming the bad field.
    """
    at = at or timezone.now()
    campaign_id = parse_id(campaign_id)
    amount = parse_amount(amount)
    occurred = parse_occurred_at(occurred_at, at=at)
    key = parse_idempotency_key(idempotency_key)
    if source not in SpendSource.values:
        raise invalid("source", f"must be one of {', '.join(SpendSource.values)}")
    try:
        with transaction.atomic():
            return _record_spend_locked(campaign_id, amount, occurred, key, source, at)
    except IntegrityError:
        # Another brand's transaction inserted the same key after our check.
        existing = SpendEvent.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _already_recorded(existing, campaign_id=campaign_id, amount=amount)


def _record_spend_locked(
    campaign_id: int, amount: Decimal, occurred: datetime, key: str, source: str, at: datetime
) -> SpendResult:
    # Find the campaign's brand and lock its row in one statement (the hot path).
    brand = (
        Brand.objects.select_for_update(of=("self",)).filter(campaigns__pk=campaign_id).first()
    )
    if brand is None:
        raise invalid("campaign_id", CAMPAIGN_UNKNOWN.format(value=campaign_id))
    brand_id = brand.pk
    existing = SpendEvent.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return _already_recorded(existing, campaign_id=campaign_id, amount=amount)
    _roll_over([brand], at=at)

    today = local_date(at, brand.zone)
    day = local_date(occurred, brand.zone)
    counted_today = day == today
    counted_this_month = month_start(day) == month_start(today)
    event = SpendEvent.objects.create(
        campaign_id=campaign_id,
        brand_id=brand_id,
        amount=amount,
        occurred_at=occurred,
        recorded_at=at,
        source=source,
        idempotency_key=key,
    )
    increment = money_value(amount)
    brand_updates = {}
    if counted_today:
        brand_updates["current_daily_spend"] = F("current_daily_spend") + increment
        Campaign.objects.filter(pk=campaign_id).update(daily_spend=F("daily_spend") + increment)
    if counted_this_month:
        brand_updates["current_monthly_spend"] = F("current_monthly_spend") + increment
    if brand_updates:
        Brand.objects.filter(pk=brand_id).update(**brand_updates)

    states, totals = _evaluate([brand_id], at=at, actor=SPEND_ACTOR)
    logger.info(
        "spend %s recorded: %s on campaign %s (key %s, source %s)",
        event.pk,
        amount,
        campaign_id,
        key,
        source,
    )
    return SpendResult(
        event=event,
        created=True,
        counted_today=counted_today,
        counted_this_month=counted_this_month,
        campaign=next(s for s in states if s.campaign_id == campaign_id),
        brand=totals[brand_id],
        changes=tuple(s for s in states if s.changed),
    )


MAX_BATCH = 10_000
MAX_ERRORS_SHOWN = 50
BATCH_ROW_INVALID = "{label} {number}: {reason}"
BATCH_KEY_REPEATED = (
    "idempotency_key: {key} is also {label} {first} with a different spend; "
    "use a new key for a new spend"
)


@dataclass(frozen=True, slots=True)
class SpendInput:
    """One spend of a batch, as it arrived (validated by record_spend_batch)."""

    campaign_id: object
    amount: object
    occurred_at: object = None
    idempotency_key: object = None


@dataclass(frozen=True, slots=True)
class _Spend:
    number: int
    campaign_id: int
    amount: Decimal
    occurred_at: datetime
    key: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    recorded: int
    already_recorded: int
    outcomes: tuple[str, ...]  # per input row: "recorded" or "already_recorded"
    changes: tuple[CampaignState, ...]


def record_spend_batch(
    events: Sequence[SpendInput],
    *,
    source: str = SpendSource.CLI,
    at: datetime | None = None,
    first_number: int = 1,
    label: str = "row",
) -> BatchResult:
    """Record many spends in one transaction, with record_spend's guarantees.

    Every row is validated first; if any is bad, a ValidationError lists each bad
    row by number ("row 3: amount: ...", or "line 4" for a file) and nothing is
    written. Keys already in the ledger, or repeated in the batch with the same spend,
    count once; reused for a different spend, they are an error. Counters move once
    per brand and campaign, and the brands' campaigns are evaluated once, at the end.
    """
    at = at or timezone.now()
    if len(events) > MAX_BATCH:
        raise invalid("events", f"at most {MAX_BATCH:,} spends per batch (got {len(events):,})")
    if source not in SpendSource.values:
        raise invalid("source", f"must be one of {', '.join(SpendSource.values)}")
    spends, errors = _parse_batch(events, at=at, first_number=first_number, label=label)
    first_of: dict[str, _Spend] = {}
    unique: list[_Spend] = []
    for spend in spends:
        first = first_of.setdefault(spend.key, spend)
        if first is spend:
            unique.append(spend)
        elif (first.campaign_id, first.amount) != (spend.campaign_id, spend.amount):
            reason = BATCH_KEY_REPEATED.format(
                key=shown(spend.key), label=label, first=first.number
            )
            errors.append(_row_error(label, spend.number, reason))
    brand_of = dict(
        Campaign.objects.filter(pk__in=in_ids(sorted({s.campaign_id for s in unique}))).values_list(
            "pk", "brand_id"
        )
    )
    for spend in unique:
        if spend.campaign_id not in brand_of:
            reason = f"campaign_id: {CAMPAIGN_UNKNOWN.format(value=spend.campaign_id)}"
            errors.append(_row_error(label, spend.number, reason))
    _raise_batch_errors(errors)
    with transaction.atomic():
        brands = _lock_brands(sorted(set(brand_of.values())))
        existing = {
            key: (campaign_id, amount)
            for key, campaign_id, amount in SpendEvent.objects.filter(
                idempotency_key__in=in_texts([s.key for s in unique])
            ).values_list("idempotency_key", "campaign_id", "amount")
        }
        for spend in unique:
            if spend.key in existing and existing[spend.key] != (spend.campaign_id, spend.amount):
                campaign_id, amount = existing[spend.key]
                reason = "idempotency_key: " + KEY_CONFLICT.format(
                    key=shown(spend.key), campaign_id=campaign_id, amount=format_money(amount)
                )
                errors.append(_row_error(label, spend.number, reason))
        _raise_batch_errors(errors)
        _roll_over(brands, at=at)
        new = [spend for spend in unique if spend.key not in existing]
        _insert_and_count(new, brands=brands, brand_of=brand_of, source=source, at=at)
        states, _ = _evaluate(sorted(set(brand_of.values())), at=at, actor=SPEND_ACTOR)
    recorded = {spend.key for spend in new}
    outcomes = tuple(
        "recorded" if spend.key in recorded and first_of[spend.key] is spend else "already_recorded"
        for spend in spends
    )
    logger.info("spend batch: %d recorded, %d already recorded", len(new), len(spends) - len(new))
    return BatchResult(
        recorded=len(new),
        already_recorded=len(spends) - len(new),
        outcomes=outcomes,
        changes=tuple(s for s in states if s.changed),
    )


def _row_error(label: str, number: int, reason: str) -> str:
    return BATCH_ROW_INVALID.format(label=label, number=number, reason=reason)


def _parse_batch(
    events: Sequence[SpendInput], *, at: datetime, first_number: int, label: str
) -> tuple[list[_Spend], list[str]]:
    spends: list[_Spend] = []
    errors: list[str] = []
    for number, event in enumerate(events, start=first_number):
        try:
            spends.append(
                _Spend(
                    number=number,
                    campaign_id=parse_id(event.campaign_id),
                    amount=parse_amount(event.amount),
                    occurred_at=parse_occurred_at(event.occurred_at, at=at),
                    key=parse_idempotency_key(event.idempotency_key),
                )
            )
        except ValidationError as error:
            errors.append(_row_error(label, number, describe(error)))
    return spends, errors


def _raise_batch_errors(errors: Sequence[str]) -> None:
    if errors:
        shown_errors = list(errors[:MAX_ERRORS_SHOWN])
        if len(errors) > MAX_ERRORS_SHOWN:
            shown_errors.append(f"... and {len(errors) - MAX_ERRORS_SHOWN} more")
        raise ValidationError({"events": shown_errors})


def _insert_and_count(
    spends: Sequence[_Spend],
    *,
    brands: Sequence[Brand],
    brand_of: dict[int, int],
    source: str,
    at: datetime,
) -> None:
    """Insert the ledger rows, then move each brand's and campaign's counters once."""
    SpendEvent.objects.bulk_create(
        SpendEvent(
            campaign_id=s.campaign_id, brand_id=brand_of[s.campaign_id], amount=s.amount,
            occurred_at=s.occurred_at, recorded_at=at, source=source, idempotency_key=s.key,
        )
        for s in spends
    )  # fmt: skip
    zones = {brand.pk: brand.zone for brand in brands}
    today_of = {pk: local_date(at, zone) for pk, zone in zones.items()}
    brand_day: dict[int, Decimal] = defaultdict(Decimal)
    brand_month: dict[int, Decimal] = defaultdict(Decimal)
    campaign_day: dict[int, Decimal] = defaultdict(Decimal)
    for s in spends:
        brand_id = brand_of[s.campaign_id]
        today = today_of[brand_id]
        day = today if s.occurred_at == at else local_date(s.occurred_at, zones[brand_id])
        if day == today:
            brand_day[brand_id] += s.amount
            campaign_day[s.campaign_id] += s.amount
        if month_start(day) == month_start(today):
            brand_month[brand_id] += s.amount
    for brand_id in sorted(brand_day.keys() | brand_month.keys()):
        updates = {}
        if brand_id in brand_day:
            updates["current_daily_spend"] = F("current_daily_spend") + money_value(
                brand_day[brand_id]
            )
        if brand_id in brand_month:
            updates["current_monthly_spend"] = F("current_monthly_spend") + money_value(
                brand_month[brand_id]
            )
        Brand.objects.filter(pk=brand_id).update(**updates)
    for campaign_id, amount in sorted(campaign_day.items()):
        Campaign.objects.filter(pk=campaign_id).update(
            daily_spend=F("daily_spend") + money_value(amount)
        )


def _already_recorded(existing: SpendEvent, *, campaign_id: int, amount: Decimal) -> SpendResult:
    if existing.campaign_id != campaign_id or existing.amount != amount:
        raise invalid(
            "idempotency_key",
            KEY_CONFLICT.format(
                key=shown(existing.idempotency_key),
                campaign_id=existing.campaign_id,
                amount=format_money(existing.amount),
            ),
        )
    campaign = Campaign.objects.select_related("brand").get(pk=campaign_id)
    state = CampaignState(
        campaign_id=campaign.pk,
        name=campaign.name,
        brand_id=campaign.brand_id,
        was_active=campaign.is_active,
        old_reasons=campaign.pause_reasons,
        is_active=campaign.is_active,
        pause_reasons=campaign.pause_reasons,
        daily_spend=campaign.daily_spend,
        daily_budget=campaign.daily_budget,
    )
    return SpendResult(
        event=existing,
        created=False,
        counted_today=False,
        counted_this_month=False,
        campaign=state,
        brand=BrandTotals.of(campaign.brand),
        changes=(),
    )


def refresh_campaign_states(
    *, at: datetime, actor: str, brand_ids: Sequence[int] | None = None
) -> RefreshResult:
    """Bring every campaign's `is_active` / `pause_reasons` up to date at `at`.

    Rolls stale counters into the brand's current local day and month first. Writes
    only campaigns whose state changes, each with one audit row naming `actor`. The
    number of queries depends on the number of brands (in chunks of
    BRANDS_PER_TRANSACTION) and of distinct state transitions, not of campaigns.
    """
    if brand_ids is None:
        brand_ids = list(Brand.objects.order_by("pk").values_list("pk", flat=True))
    changes: list[CampaignState] = []
    rolled: list[int] = []
    for chunk in chunked(sorted(set(brand_ids)), BRANDS_PER_TRANSACTION):
        with transaction.atomic():
            brands = _lock_brands(chunk)
            rolled += _roll_over(brands, at=at)
            states, _ = _evaluate(chunk, at=at, actor=actor)
            changes += (s for s in states if s.changed)
    return RefreshResult(changes=tuple(changes), rolled_over=tuple(rolled))


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


def _roll_over(brands: Iterable[Brand], *, at: datetime) -> list[int]:
    """Move counters of locked brands whose local day or month has changed into the
    current period, and return those brands' ids.

    The new period's counters are set from the ledger, not to zero: a spend dated
    in the new period but recorded before the roll-over (up to 5 minutes early) is
    kept. Each statement is conditional on the period marker, so a repeated or late
    roll-over changes nothing; one is done per time zone, not per brand.
    """
    stale_days: dict[tuple[str, date], list[int]] = defaultdict(list)
    stale_months: dict[tuple[str, date], list[int]] = defaultdict(list)
    for brand in brands:
        today = local_date(at, brand.zone)
        if brand.counters_day != today:
            stale_days[brand.timezone, today].append(brand.pk)
        if brand.counters_month != month_start(today):
            stale_months[brand.timezone, month_start(today)].append(brand.pk)
    for (zone_name, day), ids in stale_days.items():
        start, end = day_bounds(day, ZoneInfo(zone_name))
        Campaign.objects.filter(brand_id__in=ids).exclude(brand__counters_day=day).update(
            daily_spend=_ledger_sum("campaign", start, end)
        )
        Brand.objects.filter(pk__in=ids).exclude(counters_day=day).update(
            current_daily_spend=_ledger_sum("brand", start, end), counters_day=day
        )
    for (zone_name, first_day), ids in stale_months.items():
        start, end = month_bounds(first_day, ZoneInfo(zone_name))
        Brand.objects.filter(pk__in=ids).exclude(counters_month=first_day).update(
            current_monthly_spend=_ledger_sum("brand", start, end), counters_month=first_day
        )
    rolled = sorted({pk for ids in [*stale_days.values(), *stale_months.values()] for pk in ids})
    if rolled:
        logger.info("counters rolled into a new period for brands %s", rolled)
    return rolled


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
    """Record each threshold a brand's spend has reached in the current period, once:
    the unique (brand, budget, threshold, period) row is the deduplication. New alerts
    are logged, and e-mailed to the brand's contact after the transaction commits."""
    reached: dict[tuple[int, str, int, date], BudgetAlert] = {}
    for brand in totals:
        for kind, spend, budget, period in (
            (BudgetKind.DAILY, brand.daily_spend, brand.daily_budget, brand.day),
            (BudgetKind.MONTHLY, brand.monthly_spend, brand.monthly_budget, brand.month),
        ):
            if budget <= 0 or period is None:
                continue  # a zero budget allows nothing: there is no share to cross
            for threshold in ALERT_THRESHOLDS:
                if spend * 100 >= budget * threshold:
                    reached[brand.brand_id, kind, threshold, period] = BudgetAlert(
                        brand_id=brand.brand_id, budget_kind=kind, threshold=threshold,
                        period=period, created_at=at, spend=spend, budget=budget,
                        emailed_to=brand.contact_email,
                    )  # fmt: skip
    if not reached:
        return []
    known = BudgetAlert.objects.filter(
        brand_id__in={key[0] for key in reached}, period__in={key[3] for key in reached}
    ).values_list("brand_id", "budget_kind", "threshold", "period")
    new = [alert for key, alert in reached.items() if key not in set(known)]
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
        transaction.on_commit(partial(_send_alert_mails, mails), robust=True)
    return new


def _send_alert_mails(mails: Sequence[tuple[str, BudgetAlert]]) -> None:
    for brand_name, alert in mails:
        paused = (
            "Its campaigns are paused until the budget resets or is raised.\n"
            if alert.threshold >= 100
            else ""
        )
        send_mail(
            subject=f"{brand_name}: {alert.threshold} % of the {alert.budget_kind} budget spent",
            message=(
                f"{brand_name} has spent {format_money(alert.spend)} of its "
                f"{alert.budget_kind} budget of {format_money(alert.budget)} for {alert.period}.\n"
                + (
                    "Its campaigns are paused until the budget resets or is raised.\n"
                    if paused
                    else ""
                )
            ),
            from_email=None,
            recipient_list=[alert.emailed_to],
        )


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


# --- Changes made by people (admin) -------------------------------------------------

BRAND_AUDITED_FIELDS = ("name", "timezone", "daily_budget", "monthly_budget", "is_active")
CAMPAIGN_AUDITED_FIELDS = ("name", "is_enabled", "daily_budget", "schedule")


def save_brand(
    brand: Brand, *, changed_fields: Iterable[str], actor: str, at: datetime
) -> RefreshResult:
    """Save a brand edited by a person: audit what changed, re-evaluate its campaigns."""
    with transaction.atomic():
        old = _lock_brands([brand.pk])[0] if brand.pk else None
        if old is None:
            brand.save()
        else:
            # Only what a person edits: the instance was read before the lock, and its
            # counters and period markers may be stale by now.
            fields = list(BRAND_AUDITED_FIELDS)
            if old.timezone != brand.timezone:
                # The counters' day and month are the old zone's; recompute them.
                brand.counters_day = brand.counters_month = None
                fields += ["counters_day", "counters_month"]
            brand.save(update_fields=fields)
        if old is not None:
            _audit_settings(old, brand, changed_fields, BRAND_AUDITED_FIELDS, actor=actor, at=at)
        return refresh_campaign_states(at=at, actor=actor, brand_ids=[brand.pk])


def save_campaign(
    campaign: Campaign, *, changed_fields: Iterable[str], actor: str, at: datetime
) -> RefreshResult:
    """Save a campaign edited by a person: audit what changed, re-evaluate its state."""
    with transaction.atomic():
        _lock_brands([campaign.brand_id])
        old = Campaign.objects.filter(pk=campaign.pk).first() if campaign.pk else None
        # Only what a person edits: counters and state may have moved since the read.
        campaign.save(update_fields=None if old is None else CAMPAIGN_AUDITED_FIELDS)
        if old is not None:
            _audit_settings(
                old, campaign, changed_fields, CAMPAIGN_AUDITED_FIELDS, actor=actor, at=at
            )
        return refresh_campaign_states(at=at, actor=actor, brand_ids=[campaign.brand_id])


def set_campaigns_enabled(
    campaign_ids: Sequence[int], *, enabled: bool, actor: str, at: datetime
) -> RefreshResult:
    """A person's switch: enable or disable campaigns, audited, states updated at once."""
    with transaction.atomic():
        brand_ids = list(
            Campaign.objects.filter(pk__in=campaign_ids).values_list("brand_id", flat=True)
        )
        _lock_brands(sorted(set(brand_ids)))
        to_change = list(Campaign.objects.filter(pk__in=campaign_ids).exclude(is_enabled=enabled))
        Campaign.objects.filter(pk__in=[c.pk for c in to_change]).update(is_enabled=enabled)
        SettingChange.objects.bulk_create(
            SettingChange(
                changed_at=at,
                actor=actor,
                object_type="campaign",
                object_id=c.pk,
                object_repr=str(c.name),
                field="is_enabled",
                old_value=str(c.is_enabled),
                new_value=str(enabled),
            )
            for c in to_change
        )
        return refresh_campaign_states(at=at, actor=actor, brand_ids=brand_ids)


def schedule_saved(
    schedule: Schedule, *, old: Schedule | None, old_windows: str, actor: str, at: datetime
) -> RefreshResult:
    """After a person saved a schedule and its windows: audit the change and bring
    every campaign on the schedule up to date (an opening window resumes at once)."""
    with transaction.atomic():
        # From the database: the admin's instance may hold prefetched, older windows.
        windows = schedule_summary(load_windows([schedule.pk]).get(schedule.pk, []))
        if old is not None:
            _audit_settings(old, schedule, ["name"], ("name",), actor=actor, at=at)
            if windows != old_windows:
                SettingChange.objects.create(
                    changed_at=at,
                    actor=actor,
                    object_type="schedule",
                    object_id=schedule.pk,
                    object_repr=str(schedule)[:300],
                    field="windows",
                    old_value=old_windows,
                    new_value=windows,
                )
        brand_ids = Campaign.objects.filter(schedule=schedule).values_list("brand_id", flat=True)
        return refresh_campaign_states(at=at, actor=actor, brand_ids=list(set(brand_ids)))


def _audit_settings(
    old: Brand | Campaign | Schedule,
    new: Brand | Campaign | Schedule,
    changed_fields: Iterable[str],
    audited: Sequence[str],
    *,
    actor: str,
    at: datetime,
) -> None:
    rows = []
    for field in audited:
        before, after = getattr(old, field), getattr(new, field)
        if field in changed_fields and before != after:
            rows.append(
                SettingChange(
                    changed_at=at,
                    actor=actor,
                    object_type=new._meta.model_name or "",
                    object_id=new.pk,
                    object_repr=str(new)[:300],
                    field=field,
                    old_value=_audit_text(before),
                    new_value=_audit_text(after),
                )
            )
    SettingChange.objects.bulk_create(rows)


def _audit_text(value: object) -> str:
    if value is None:
        return ""
    return str(canonical(value)) if isinstance(value, Decimal) else str(value)


# --- Periodic work: resets and reconciliation ---------------------------------------


def stale_brand_ids(*, at: datetime, period: Literal["day", "month"]) -> list[int]:
    """Brands whose counters belong to an earlier local day (or month) than `at`'s."""
    stale = Q(pk__in=[])
    for zone_name in Brand.objects.order_by().values_list("timezone", flat=True).distinct():
        today = local_date(at, ZoneInfo(zone_name))
        marker = Q(counters_day=today) if period == "day" else Q(counters_month=month_start(today))
        stale |= Q(timezone=zone_name) & ~marker
    return list(Brand.objects.filter(stale).order_by("pk").values_list("pk", flat=True))


def reset_periods(*, at: datetime, actor: str, period: Literal["day", "month"]) -> RefreshResult:
    """Roll the counters of brands whose local day (or month) has changed into the new
    period and resume what was paused only for budget. Idempotent: a second run, or
    one running at the same time, finds nothing stale; a missed run is caught up."""
    return refresh_campaign_states(
        at=at, actor=actor, brand_ids=stale_brand_ids(at=at, period=period)
    )


@dataclass(frozen=True, slots=True)
class Drift:
    """A counter that disagreed with the ledger, and was repaired."""

    brand_id: int
    campaign_id: int | None
    counter: str
    period: date
    found: Decimal
    expected: Decimal

    @property
    def delta(self) -> Decimal:
        return self.found - self.expected


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    drifts: tuple[Drift, ...]
    changes: tuple[CampaignState, ...]


def reconcile_counters(*, at: datetime, actor: str) -> ReconcileResult:
    """Recompute every counter of the current periods from the ledger; repair, audit
    and log each one that differs, then re-evaluate the brands concerned."""
    drifts: list[Drift] = []
    changes: list[CampaignState] = []
    brand_ids = list(Brand.objects.order_by("pk").values_list("pk", flat=True))
    for chunk in chunked(brand_ids, BRANDS_PER_TRANSACTION):
        with transaction.atomic():
            _roll_over(_lock_brands(chunk), at=at)
            found = _reconcile_chunk(list(Brand.objects.filter(pk__in=chunk)), at=at)
            for drift in found:
                model = Brand if drift.campaign_id is None else Campaign
                pk = drift.brand_id if drift.campaign_id is None else drift.campaign_id
                model.objects.filter(pk=pk).update(**{drift.counter: drift.expected})
                logger.warning(
                    "counter %s of %s %s for %s was %s, ledger says %s (delta %s): repaired",
                    drift.counter, model._meta.model_name, pk, drift.period,
                    drift.found, drift.expected, drift.delta,
                )  # fmt: skip
            SettingChange.objects.bulk_create(
                SettingChange(
                    changed_at=at,
                    actor=actor,
                    object_type="brand" if d.campaign_id is None else "campaign",
                    object_id=d.brand_id if d.campaign_id is None else d.campaign_id,
                    object_repr=f"{d.counter} for {d.period}",
                    field=d.counter,
                    old_value=_audit_text(d.found),
                    new_value=_audit_text(d.expected),
                )
                for d in found
            )
            if found:
                states, _ = _evaluate(sorted({d.brand_id for d in found}), at=at, actor=actor)
                changes += (s for s in states if s.changed)
            drifts += found
    return ReconcileResult(drifts=tuple(drifts), changes=tuple(changes))


def _reconcile_chunk(brands: Sequence[Brand], *, at: datetime) -> list[Drift]:
    """Compare the counters of rolled-over brands with ledger sums, zone by zone."""
    drifts: list[Drift] = []
    by_zone: dict[str, list[Brand]] = defaultdict(list)
    for brand in brands:
        by_zone[brand.timezone].append(brand)
    for zone_name, zone_brands in by_zone.items():
        zone = ZoneInfo(zone_name)
        day = local_date(at, zone)
        ids = [b.pk for b in zone_brands]
        spend = SpendEvent.objects.filter(brand_id__in=ids).order_by()
        day_start_, day_end = day_bounds(day, zone)
        month_start_, month_end = month_bounds(month_start(day), zone)
        today = spend.filter(occurred_at__gte=day_start_, occurred_at__lt=day_end)
        month = spend.filter(occurred_at__gte=month_start_, occurred_at__lt=month_end)
        brand_day = dict(today.values_list("brand_id").annotate(total=Sum("amount")))
        brand_month = dict(month.values_list("brand_id").annotate(total=Sum("amount")))
        campaign_day = dict(today.values_list("campaign_id").annotate(total=Sum("amount")))
        for brand in zone_brands:
            for counter, period, ledger in (
                ("current_daily_spend", day, brand_day),
                ("current_monthly_spend", month_start(day), brand_month),
            ):
                found, expected = getattr(brand, counter), ledger.get(brand.pk, Decimal(0))
                if found != expected:
                    drifts.append(Drift(brand.pk, None, counter, period, found, expected))
        campaigns = Campaign.objects.filter(brand_id__in=ids).order_by("pk")
        for pk, brand_id, found in campaigns.values_list("pk", "brand_id", "daily_spend"):
            expected = campaign_day.get(pk, Decimal(0))
            if found != expected:
                drifts.append(Drift(brand_id, pk, "daily_spend", day, found, expected))
    return drifts
