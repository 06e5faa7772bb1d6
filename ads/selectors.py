"""Reads shared by the admin, the dashboard and the API: budget standing, campaign
counts, recent pauses and alerts, spend per hour, what an API key may see, the event
feed. Nothing here writes; presenting the rows is the interfaces' business."""

import base64
import binascii
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Self

from django.db import connection
from django.db.models import BigIntegerField, Count, F, Model, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncHour
from django_celery_beat.models import PeriodicTask

from ads.models import (
    ApiKey,
    Brand,
    BudgetAlert,
    Campaign,
    CampaignStatusChange,
    Event,
    SettingChange,
    SpendEvent,
)
from ads.rules import (
    Band,
    Pacing,
    band,
    day_bounds,
    elapsed_share,
    left,
    left_or_over,
    month_bounds,
    over,
    pacing,
    reasons_label,
    spend_of_budget,
    spent_share,
)
from ads.validation import CURSOR_INVALID, EVENT_PAGE_DEFAULT, MAX_ID, invalid, shown


@dataclass(frozen=True, slots=True)
class Standing:
    """How one budget of a brand stands now."""

    spend: Decimal
    budget: Decimal
    currency: str
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
        return left_or_over(self.spend, self.budget, self.currency)

    @property
    def text(self) -> str:
        return spend_of_budget(self.spend, self.budget, self.currency)


def standing(brand: Brand, at: datetime) -> tuple[Standing, Standing]:
    """Today's and this month's standing of a brand, paced on its own clock.

    Counters that still belong to an earlier period (no roll-over yet) read as zero.
    """
    zone = brand.zone
    period = brand.counting_period(at)
    day_spend, month_spend = brand.spend_today(at), brand.spend_this_month(at)
    day_elapsed = elapsed_share(*day_bounds(period.day, zone), at)
    month_elapsed = elapsed_share(*month_bounds(period.month, zone), at)
    return (
        Standing(
            day_spend,
            brand.daily_budget,
            brand.currency,
            band(day_spend, brand.daily_budget),
            pacing(day_spend, brand.daily_budget, day_elapsed),
        ),
        Standing(
            month_spend,
            brand.monthly_budget,
            brand.currency,
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


def hourly_spend(at: datetime) -> dict[str, dict[int, Decimal]]:
    """Spend in each hour (0-23) of at's UTC day that has any, per currency (the brand's):
    {"EUR": {9: Decimal("6.00")}, "JPY": {...}}. Amounts of different currencies are never
    added together."""
    start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        SpendEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=start + timedelta(days=1))
        .order_by()
        .annotate(hour=TruncHour("occurred_at"), currency=F("brand__currency"))
        .values("currency", "hour")
        .annotate(total=Sum("amount"))
    )
    per_currency: dict[str, dict[int, Decimal]] = {}
    for row in rows:
        per_currency.setdefault(row["currency"], {})[row["hour"].hour] = row["total"]
    return per_currency


def periodic_task_runs() -> Sequence[PeriodicTask]:
    return list(PeriodicTask.objects.select_related("crontab", "interval").order_by("name"))


def last_setting_change(obj: Model, field: str) -> SettingChange | None:
    """The newest audit row of one field of a brand, campaign, schedule or key."""
    return SettingChange.objects.filter(
        object_type=obj._meta.model_name or "", object_id=obj.pk, field=field
    ).first()


def visible_brands(api_key: ApiKey) -> QuerySet[Brand]:
    """The brands an API key may see; any other answers as if it did not exist."""
    return Brand.objects.all() if api_key.all_brands else api_key.brands.all()


def visible_campaigns(api_key: ApiKey) -> QuerySet[Campaign]:
    return (
        Campaign.objects.filter(brand__in=visible_brands(api_key))
        .select_related("brand", "schedule")
        .prefetch_related("schedule__windows")
    )


# --- The event feed --------------------------------------------------------------------

CURSOR_TEXT = re.compile(r"v1:(0|[1-9][0-9]{0,18}):(0|[1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """A place in the event feed, just after the event (txid, id) (see `event_feed`).

    As a cursor it is URL-safe base64 of "v1:<txid>:<id>", without padding: opaque to
    clients, and only a position, so it tells nothing about any brand's events. It
    stays valid across restarts (both numbers are stored with the event), but not
    across moving the database to another PostgreSQL cluster by dump and restore,
    where transaction ids start again from low numbers: connectors then start over
    from the beginning and de-duplicate by event id."""

    txid: int
    id: int

    @property
    def cursor(self) -> str:
        text = f"v1:{self.txid}:{self.id}".encode()
        return base64.urlsafe_b64encode(text).decode().rstrip("=")

    @classmethod
    def from_cursor(cls, cursor: str, *, field: str = "after") -> Self:
        """The position a cursor of `cursor`'s form names; anything else, including
        another spelling of the same position, is refused naming `field`."""
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            text = ""
        match = CURSOR_TEXT.fullmatch(text)
        position = cls(int(match[1]), int(match[2])) if match else None
        if position is None or max(position.txid, position.id) > MAX_ID:
            raise invalid(field, CURSOR_INVALID.format(value=shown(cursor)))
        if position.cursor != cursor:  # the decoder skips stray characters
            raise invalid(field, CURSOR_INVALID.format(value=shown(cursor)))
        return position


# Before every event: on SQLite every txid is 0 and ids start at 1, on PostgreSQL
# transaction ids start at 3.
FEED_START = FeedPosition(0, 0)

# The oldest transaction still running when the statement's snapshot was taken (or the
# next one to start, when none is running), as a bigint like Event.txid.
SNAPSHOT_XMIN = RawSQL(
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint", (), output_field=BigIntegerField()
)


@dataclass(frozen=True, slots=True)
class FeedPage:
    events: list[Event]
    next: FeedPosition  # after the last event of the page; `after` itself when it is empty
    has_more: bool  # more events can be read now, beyond this page


def event_feed(
    api_key: ApiKey,
    *,
    after: FeedPosition = FEED_START,
    types: Collection[str] = (),
    limit: int = EVENT_PAGE_DEFAULT,
) -> FeedPage:
    """The next `limit` events of the key's brands after `after`, of `types` (empty:
    every type), in feed order.

    Feed order is (txid, id): the writing transaction's id, then the row's. A reader
    that stores the position after the last event it read and resumes from it must
    never find an event appear later *behind* that position, or it would skip it for
    good. Row ids alone do not give that on PostgreSQL: ids come from a sequence when
    the row is inserted, not when its transaction commits, so a slow transaction can
    commit event 7 after a reader has already read (and passed) event 9.

    So, on PostgreSQL, only events of transactions older than every transaction still
    running are served: `txid < pg_snapshot_xmin(pg_current_snapshot())`, taken in the
    same statement (one snapshot) as the rows. Every transaction with a lower id has
    finished, committed or rolled back, so no event can ever appear below that line;
    any transaction that may still write one (running now, or not started yet) has an
    id at or above it and sorts after every position served (an event written inside a
    savepoint carries its top-level transaction's id, the one snapshots list). The
    price is delay, never loss: an event is served once every transaction older than
    its own has finished, so a long transaction anywhere on the database server (in
    any of its databases) holds the feed back until it ends.

    Within a stream the order is the sequence's: a stream's events are written one
    transaction at a time (under the brand's lock), ids grow with them, and each
    event's txid is raised to its stream's previous event's when that is higher
    (`ads.services.events`), as a transaction may have taken its id before the one
    that wrote the stream's previous events.

    On SQLite one transaction writes at a time and ids are never reused
    (AUTOINCREMENT), so ids follow commit order; txid is 0 on every row and every
    committed event is served at once.

    The position is only a place in that order; the brand scope is applied on every
    read, so a cursor passed between keys shows the second key only its own brands.
    """
    events = Event.objects.all()
    if not api_key.all_brands:
        events = events.filter(brand__in=visible_brands(api_key))
    # txid >= t lets an index on (txid, id) start its scan at t; the OR then drops
    # what is at or before the position within transaction t.
    events = events.filter(Q(txid__gt=after.txid) | Q(pk__gt=after.id), txid__gte=after.txid)
    if types:
        events = events.filter(type__in=sorted(types))
    if connection.vendor == "postgresql":
        events = events.filter(txid__lt=SNAPSHOT_XMIN)
    rows = list(events.order_by("txid", "pk")[: limit + 1])
    page = rows[:limit]
    last = FeedPosition(page[-1].txid, page[-1].pk) if page else after
    return FeedPage(events=page, next=last, has_more=len(rows) > limit)
