"""Recording spend: one at a time (record_spend) or many in one transaction
(record_spend_batch), with the ledger, the counters and enforcement in step.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ads.models import (
    MAX_COUNTER,
    Brand,
    Campaign,
    SpendEvent,
    SpendSource,
)
from ads.money import format_amount, format_money, money_value
from ads.rules import (
    local_date,
)
from ads.services.kernel import (
    SPEND_ACTOR,
    BrandTotals,
    CampaignState,
    evaluate,
    lock_brands,
    roll_over,
)
from ads.sql import in_ids, in_texts
from ads.validation import (
    CAMPAIGN_UNKNOWN,
    CURRENCY_MISMATCH,
    KEY_CONFLICT,
    SpendConflict,
    describe,
    invalid,
    parse_amount,
    parse_currency,
    parse_id,
    parse_idempotency_key,
    parse_occurred_at,
    shown,
)

logger = logging.getLogger(__name__)


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
    currency: object = None,
    source: str = SpendSource.CLI,
    at: datetime | None = None,
) -> SpendResult:
    """Record one spend in the ledger, move the counters, and enforce at once.

    Arguments may be untrusted (strings from the command line, JSON from a task); each
    is validated before anything is written. `currency`, when given, must be the
    brand's: amounts are never converted. `at` is when the spend is recorded
    (default: now). Raises `ValidationError` naming the bad field.
    """
    at = at or timezone.now()
    campaign_id = parse_id(campaign_id)
    amount = parse_amount(amount)
    occurred = parse_occurred_at(occurred_at, at=at)
    key = parse_idempotency_key(idempotency_key)
    stated = parse_currency(currency)
    if source not in SpendSource.values:
        raise invalid("source", f"must be one of {', '.join(SpendSource.values)}")
    return in_key_race(
        [key], lambda: _record_spend_locked(campaign_id, amount, occurred, key, stated, source, at)
    )


R = TypeVar("R")


def in_key_race(keys: Sequence[str], record: Callable[[], R]) -> R:
    """Run `record` in a transaction, again if the unique index refused one of `keys`.

    Idempotency keys are unique across brands, and the brand locks serialise only one
    brand's writers: a transaction of another brand can insert a key between our check
    and our insert, and on PostgreSQL ours then fails on the index once theirs commits.
    Run again, `record` finds that spend like any key recorded before, and answers the
    same: "already recorded", or the conflict. Each run sees more of `keys` taken, so
    this ends; an IntegrityError that no newly taken key explains is raised as it is.
    """
    taken_before: set[str] | None = None
    while True:
        try:
            with transaction.atomic():
                return record()
        except IntegrityError:
            taken = set(
                SpendEvent.objects.filter(idempotency_key__in=in_texts(keys)).values_list(
                    "idempotency_key", flat=True
                )
            )
            if not taken or taken == taken_before:
                raise
            logger.info("idempotency key(s) recorded meanwhile by another brand: running again")
            taken_before = taken


def currency_mismatch(stated: str | None, brand: Brand) -> str | None:
    """Why a spend stated in `stated` cannot count for `brand`, or None. Checked under
    the brand's lock: a brand without spend may change currency until then."""
    if stated is None or stated == brand.currency:
        return None
    return CURRENCY_MISMATCH.format(given=stated, brand=brand.name, currency=brand.currency)


def _record_spend_locked(
    campaign_id: int,
    amount: Decimal,
    occurred: datetime,
    key: str,
    currency: str | None,
    source: str,
    at: datetime,
) -> SpendResult:
    # Find the campaign's brand and lock its row in one statement (the hot path).
    brand = Brand.objects.select_for_update(of=("self",)).filter(campaigns__pk=campaign_id).first()
    if brand is None:
        raise invalid("campaign_id", CAMPAIGN_UNKNOWN.format(value=campaign_id))
    if mismatch := currency_mismatch(currency, brand):
        raise invalid("currency", mismatch)
    brand_id = brand.pk
    existing = SpendEvent.objects.select_related("brand").filter(idempotency_key=key).first()
    if existing is not None:
        _check_same_spend(existing, campaign_id=campaign_id, amount=amount)
    # Before any figure is read, also for a spend already recorded: after the brand's
    # local midnight its counters must not be shown as today's.
    roll_over([brand], at=at)
    if existing is not None:
        return _already_recorded(existing, at=at)

    period = brand.counting_period(at)
    day = local_date(occurred, brand.zone)
    counted_today = period.counts_today(day)
    counted_this_month = period.counts_this_month(day)
    event = SpendEvent.objects.create(
        campaign_id=campaign_id,
        brand_id=brand_id,
        amount=amount,
        occurred_at=occurred,
        recorded_at=at,
        source=source,
        idempotency_key=key,
    )
    brand_counters = {}
    if counted_today:
        brand_counters["current_daily_spend"] = amount
    if counted_this_month:
        brand_counters["current_monthly_spend"] = amount
    full = brand_counters and add_to_counters(Brand, brand_id, brand_counters)
    if counted_today and not full:
        full = add_to_counters(Campaign, campaign_id, {"daily_spend": amount})
    if full:
        raise invalid("amount", full)

    states, totals = evaluate([brand_id], at=at, actor=SPEND_ACTOR)
    logger.info(
        "spend %s recorded: %s %s on campaign %s (key %s, source %s)",
        event.pk,
        amount,
        brand.currency,
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
    currency: object = None


@dataclass(frozen=True, slots=True)
class _Spend:
    number: int
    campaign_id: int
    amount: Decimal
    occurred_at: datetime
    key: str
    currency: str | None


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
    numbers: Sequence[int] | None = None,
    label: str = "row",
) -> BatchResult:
    """Record many spends in one transaction, with record_spend's guarantees.

    Every row is validated first; if any is bad, a ValidationError lists each bad
    row by its number (1, 2, ... unless `numbers` gives each row's own, such as the
    line it starts on in a file: "line 4: amount: ...") and nothing is
    written. Keys already in the ledger, or repeated in the batch with the same spend,
    count once; reused for a different spend, they are an error. Counters move once
    per brand and campaign, and the brands' campaigns are evaluated once, at the end.
    """
    at = at or timezone.now()
    if len(events) > MAX_BATCH:
        raise invalid("events", f"at most {MAX_BATCH:,} spends per batch (got {len(events):,})")
    if source not in SpendSource.values:
        raise invalid("source", f"must be one of {', '.join(SpendSource.values)}")
    numbers = numbers if numbers is not None else range(1, len(events) + 1)
    spends, errors = _parse_batch(events, at=at, numbers=numbers, label=label)
    conflicts = 0  # errors that are keys reused for another spend
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
            conflicts += 1
    brand_of = dict(
        Campaign.objects.filter(pk__in=in_ids(sorted({s.campaign_id for s in unique}))).values_list(
            "pk", "brand_id"
        )
    )
    for spend in unique:
        if spend.campaign_id not in brand_of:
            reason = f"campaign_id: {CAMPAIGN_UNKNOWN.format(value=spend.campaign_id)}"
            errors.append(_row_error(label, spend.number, reason))
    _raise_batch_errors(errors, conflicts=conflicts)
    new, states = in_key_race(
        [s.key for s in unique],
        lambda: _record_batch_locked(unique, brand_of=brand_of, source=source, at=at, label=label),
    )
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


def _record_batch_locked(
    unique: Sequence[_Spend],
    *,
    brand_of: dict[int, int],
    source: str,
    at: datetime,
    label: str,
) -> tuple[list[_Spend], list[CampaignState]]:
    """The batch's writes, once its rows are valid, under its brands' locks: the spends
    it recorded, and the states of the brands' campaigns."""
    errors: list[str] = []
    brand_ids = sorted(set(brand_of.values()))
    brands = lock_brands(brand_ids)
    brand_by_pk = {brand.pk: brand for brand in brands}
    for spend in unique:
        if mismatch := currency_mismatch(spend.currency, brand_by_pk[brand_of[spend.campaign_id]]):
            errors.append(_row_error(label, spend.number, f"currency: {mismatch}"))
    _raise_batch_errors(errors, conflicts=0)
    recorded = SpendEvent.objects.filter(idempotency_key__in=in_texts([s.key for s in unique]))
    existing = {
        row["idempotency_key"]: row
        for row in recorded.values("idempotency_key", "campaign_id", "amount", "brand__currency")
    }
    for spend in unique:
        if (row := existing.get(spend.key)) is None:
            continue
        if (row["campaign_id"], row["amount"]) != (spend.campaign_id, spend.amount):
            reason = "idempotency_key: " + KEY_CONFLICT.format(
                key=shown(spend.key),
                campaign_id=row["campaign_id"],
                amount=format_money(row["amount"], row["brand__currency"]),
            )
            errors.append(_row_error(label, spend.number, reason))
    _raise_batch_errors(errors, conflicts=len(errors))
    roll_over(brands, at=at)
    new = [spend for spend in unique if spend.key not in existing]
    _insert_and_count(new, brands=brands, brand_of=brand_of, source=source, at=at)
    states, _ = evaluate(brand_ids, at=at, actor=SPEND_ACTOR)
    return new, states


def _row_error(label: str, number: int, reason: str) -> str:
    return BATCH_ROW_INVALID.format(label=label, number=number, reason=reason)


def _parse_batch(
    events: Sequence[SpendInput], *, at: datetime, numbers: Sequence[int], label: str
) -> tuple[list[_Spend], list[str]]:
    spends: list[_Spend] = []
    errors: list[str] = []
    for number, event in zip(numbers, events, strict=True):
        try:
            spends.append(
                _Spend(
                    number=number,
                    campaign_id=parse_id(event.campaign_id),
                    amount=parse_amount(event.amount),
                    occurred_at=parse_occurred_at(event.occurred_at, at=at),
                    key=parse_idempotency_key(event.idempotency_key),
                    currency=parse_currency(event.currency),
                )
            )
        except ValidationError as error:
            errors.append(_row_error(label, number, describe(error)))
    return spends, errors


def _raise_batch_errors(errors: Sequence[str], *, conflicts: int) -> None:
    """Raise the rows' errors; as a SpendConflict when every one is a reused key."""
    if errors:
        shown_errors = list(errors[:MAX_ERRORS_SHOWN])
        if len(errors) > MAX_ERRORS_SHOWN:
            shown_errors.append(f"... and {len(errors) - MAX_ERRORS_SHOWN} more")
        error_class = SpendConflict if conflicts == len(errors) else ValidationError
        raise error_class({"events": shown_errors})


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
            campaign_id=s.campaign_id,
            brand_id=brand_of[s.campaign_id],
            amount=s.amount,
            occurred_at=s.occurred_at,
            recorded_at=at,
            source=source,
            idempotency_key=s.key,
        )
        for s in spends
    )
    zones = {brand.pk: brand.zone for brand in brands}
    local_today = {pk: local_date(at, zone) for pk, zone in zones.items()}
    period_of = {brand.pk: brand.counting_period(at) for brand in brands}
    brand_day: dict[int, Decimal] = defaultdict(Decimal)
    brand_month: dict[int, Decimal] = defaultdict(Decimal)
    campaign_day: dict[int, Decimal] = defaultdict(Decimal)
    for s in spends:
        brand_id = brand_of[s.campaign_id]
        period = period_of[brand_id]
        day = (
            local_today[brand_id]
            if s.occurred_at == at
            else local_date(s.occurred_at, zones[brand_id])
        )
        if period.counts_today(day):
            brand_day[brand_id] += s.amount
            campaign_day[s.campaign_id] += s.amount
        if period.counts_this_month(day):
            brand_month[brand_id] += s.amount
    for brand_id in sorted(brand_day.keys() | brand_month.keys()):
        counters = {}
        if brand_id in brand_day:
            counters["current_daily_spend"] = brand_day[brand_id]
        if brand_id in brand_month:
            counters["current_monthly_spend"] = brand_month[brand_id]
        if full := add_to_counters(Brand, brand_id, counters):
            raise ValidationError({"events": [full]})
    for campaign_id, amount in sorted(campaign_day.items()):
        if full := add_to_counters(Campaign, campaign_id, {"daily_spend": amount}):
            raise ValidationError({"events": [full]})


COUNTER_FULL = (
    "would take the {counter} past {limit}, the most a spend counter holds; nothing was recorded"
)
COUNTER_NAMES = {
    "current_daily_spend": "spend today",
    "current_monthly_spend": "spend this month",
    "daily_spend": "spend today",
}
M = TypeVar("M", Brand, Campaign)


def add_to_counters(model: type[M], pk: int, amounts: Mapping[str, Decimal]) -> str | None:
    """Add `amounts` to counters of one row (locked through its brand) in one statement
    that moves none of them if any would pass MAX_COUNTER; then say which, and why.

    Past the limit SQLite would silently turn the integer into a REAL (inexact, and
    breaking every later sum of the column) and PostgreSQL would raise a DataError: the
    spend is refused instead, whole, with COUNTER_FULL.
    """
    if all(amount <= MAX_COUNTER for amount in amounts.values()):
        room = {f"{field}__lte": MAX_COUNTER - amount for field, amount in amounts.items()}
        moved = model.objects.filter(pk=pk, **room).update(
            **{field: F(field) + money_value(amount) for field, amount in amounts.items()}
        )
        if moved:
            return None
    row = model.objects.filter(pk=pk).values(*amounts, "name").get()
    full = next((f for f, amount in amounts.items() if row[f] + amount > MAX_COUNTER), None)
    counter = COUNTER_NAMES[full or next(iter(amounts))]
    return COUNTER_FULL.format(
        counter=f'{counter} of {model._meta.model_name} {pk} "{row["name"]}"',
        limit=format_amount(MAX_COUNTER),
    )


def _check_same_spend(existing: SpendEvent, *, campaign_id: int, amount: Decimal) -> None:
    if existing.campaign_id != campaign_id or existing.amount != amount:
        raise SpendConflict(
            {
                "idempotency_key": [
                    KEY_CONFLICT.format(
                        key=shown(existing.idempotency_key),
                        campaign_id=existing.campaign_id,
                        amount=format_money(existing.amount, existing.brand.currency),
                    )
                ]
            }
        )


def _already_recorded(existing: SpendEvent, *, at: datetime) -> SpendResult:
    """The answer for a key recorded before: nothing is counted again, and the figures
    are those of the brand's current period (its counters were just rolled over). The
    campaigns are evaluated as after any roll-over: a new day may resume them."""
    states, totals = evaluate([existing.brand_id], at=at, actor=SPEND_ACTOR)
    return SpendResult(
        event=existing,
        created=False,
        counted_today=False,
        counted_this_month=False,
        campaign=next(s for s in states if s.campaign_id == existing.campaign_id),
        brand=totals[existing.brand_id],
        changes=tuple(s for s in states if s.changed),
    )
