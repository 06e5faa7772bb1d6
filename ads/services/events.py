"""The event log: every decision and change, written in the transaction of the change
it describes, for the systems outside (the API's feed, webhooks, Slack).

Callers hold the locks of the brands concerned (every writer does: see the package's
concurrency rule), so the sequence numbers of a stream are assigned one writer at a
time and have no gaps; the unique index on (stream, sequence) would refuse a second
writer that got it wrong rather than let two events share a number.
"""

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Max

from ads.models import BudgetAlert, Campaign, Event, EventType, SettingChange
from ads.money import decimal_text
from ads.services.webhooks import plan_deliveries
from ads.sql import in_ids, in_texts

if TYPE_CHECKING:
    from ads.services.kernel import BrandTotals, CampaignState

# A person's change of these is an event; counters repaired by reconciliation and
# deletions (the object and its events are gone) are not.
NOT_SETTINGS = {"deleted"}
# A person's address is not sent to connectors and chats: the event says it changed.
PRIVATE_FIELDS = {"contact_email"}
PRIVATE = "(not sent: personal data)"


@dataclass(frozen=True, slots=True)
class EventDraft:
    type: EventType
    brand_id: int
    campaign_id: int | None
    actor: str
    payload: dict[str, Any]

    @property
    def stream(self) -> str:
        return stream_of(self.brand_id, self.campaign_id)


def stream_of(brand_id: int, campaign_id: int | None) -> str:
    return f"campaign:{campaign_id}" if campaign_id is not None else f"brand:{brand_id}"


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def emit(drafts: Sequence[EventDraft], *, at: datetime) -> list[Event]:
    """Write the events, each numbered next in its stream, and their webhook deliveries.
    One read and one insert however many there are, then one query when no endpoint is
    enabled, or two (see webhooks.plan_deliveries)."""
    if not drafts:
        return []
    streams = sorted({draft.stream for draft in drafts})
    last: dict[str, int] = defaultdict(int)
    last.update(
        Event.objects.filter(stream__in=in_texts(streams))
        .order_by()
        .values("stream")
        .annotate(last=Max("sequence"))
        .values_list("stream", "last")
    )
    events = []
    for draft in drafts:
        last[draft.stream] += 1
        events.append(
            Event(
                event_id=new_event_id(),
                type=draft.type,
                created_at=at,
                brand_id=draft.brand_id,
                campaign_id=draft.campaign_id,
                stream=draft.stream,
                sequence=last[draft.stream],
                actor=draft.actor[:150],
                payload=draft.payload | {"stream": draft.stream, "sequence": last[draft.stream]},
            )
        )
    _insert(events)
    plan_deliveries([event.event_id for event in events], at=at)
    return events


COLUMNS = (
    "event_id", "type", "created_at", "brand_id", "campaign_id", "stream", "sequence", "actor",
    "payload",
)  # fmt: skip
PG_TYPES = (
    "text", "text", "timestamptz", "bigint", "bigint", "text", "bigint", "text", "jsonb",
)  # fmt: skip


def _insert(events: Sequence[Event]) -> None:
    """All the rows in one INSERT, their values bound as one JSON parameter: an
    enforcement pass that pauses 10,000 campaigns writes its events in one statement
    (bulk_create would need a statement per hundred rows on SQLite). The rows' ids are
    not read back; the events are found again by `event_id`."""
    at = events[0].created_at
    rows = [
        {
            "event_id": e.event_id,
            "type": e.type,
            "created_at": at.isoformat(),
            "brand_id": e.brand_id,
            "campaign_id": e.campaign_id,
            "stream": e.stream,
            "sequence": e.sequence,
            "actor": e.actor,
            "payload": e.payload,
        }
        for e in events
    ]
    table = connection.ops.quote_name(Event._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in COLUMNS)
    if connection.vendor == "postgresql":
        record = ", ".join(f"{c} {t}" for c, t in zip(COLUMNS, PG_TYPES, strict=True))
        names += ", txid"
        # The feed's position: the transaction's id, raised to the stream's last event's
        # when that is higher. A transaction that took its id earlier (an enforcement
        # pass takes it at its first brand) can write a stream's next events after a
        # younger one committed the previous ones, and (txid, id) order would serve
        # them first. Never below our own id: the feed still serves nothing before our
        # transaction and every older one have finished (ads.selectors.event_feed).
        previous = (
            f"SELECT e.txid FROM {table} e WHERE e.stream = x.stream"
            " ORDER BY e.sequence DESC LIMIT 1"
        )
        select = (
            f"SELECT {', '.join(COLUMNS)},"
            f" GREATEST(pg_current_xact_id()::text::bigint, COALESCE(({previous}), 0))"
            f" FROM jsonb_to_recordset(%s::jsonb) AS x({record})"
        )
        params: list[Any] = [json.dumps(rows)]
    else:
        values = ["%s" if c == "created_at" else f"json_extract(value, '$.{c}')" for c in COLUMNS]
        names += ", txid"
        select = f"SELECT {', '.join(values)}, 0 FROM json_each(%s)"
        params = [connection.ops.adapt_datetimefield_value(at), json.dumps(rows)]
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({names}) {select}", params)


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else decimal_text(amount)


def day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def brand_figures(totals: "BrandTotals") -> dict[str, Any]:
    """A brand's spend against its budgets in the periods its counters belong to."""
    return {
        "id": totals.brand_id,
        "name": totals.name,
        "currency": totals.currency,
        "today": {
            "day": day(totals.day),
            "spend": money(totals.daily_spend),
            "budget": money(totals.daily_budget),
        },
        "this_month": {
            "month": day(totals.month),
            "spend": money(totals.monthly_spend),
            "budget": money(totals.monthly_budget),
        },
    }


def campaign_type(state: "CampaignState") -> EventType:
    if state.was_active and not state.is_active:
        return EventType.CAMPAIGN_PAUSED
    if state.is_active and not state.was_active:
        return EventType.CAMPAIGN_RESUMED
    return EventType.CAMPAIGN_REASONS_CHANGED


def state_changes(
    changed: Iterable["CampaignState"], totals: dict[int, "BrandTotals"], *, actor: str
) -> list[EventDraft]:
    """An event per campaign whose state or reasons changed, with the figures that
    decided it."""
    return [
        EventDraft(
            type=campaign_type(state),
            brand_id=state.brand_id,
            campaign_id=state.campaign_id,
            actor=actor,
            payload={
                "campaign": {
                    "id": state.campaign_id,
                    "name": state.name,
                    "is_active": state.is_active,
                    "pause_reasons": list(state.pause_reasons),
                    "was_active": state.was_active,
                    "previous_pause_reasons": list(state.old_reasons),
                    "change": state.transition,
                    "daily_spend": money(state.daily_spend),
                    "daily_budget": money(state.daily_budget),
                },
                "brand": brand_figures(totals[state.brand_id]),
                "summary": state.label,
                "actor": actor,
            },
        )
        for state in changed
    ]


def threshold_events(
    alerts: Iterable[BudgetAlert], totals: dict[int, "BrandTotals"], *, actor: str
) -> list[EventDraft]:
    return [
        EventDraft(
            type=EventType.BUDGET_THRESHOLD_REACHED,
            brand_id=alert.brand_id,
            campaign_id=None,
            actor=actor,
            payload={
                "alert": {
                    "budget": alert.budget_kind,
                    "threshold_percent": alert.threshold,
                    "period": day(alert.period),
                    "spend": money(alert.spend),
                    "budget_amount": money(alert.budget),
                },
                "brand": brand_figures(totals[alert.brand_id]),
                "actor": actor,
            },
        )
        for alert in alerts
    ]


def record_setting_changes(rows: Sequence[SettingChange], *, at: datetime) -> None:
    """Save a person's audit rows and write their events: a brand's setting on the
    brand's stream, a campaign's on the campaign's, a schedule's on each campaign that
    follows it."""
    SettingChange.objects.bulk_create(rows)
    rows = [row for row in rows if row.field not in NOT_SETTINGS]
    campaign_ids = [r.object_id for r in rows if r.object_type == "campaign"]
    schedule_ids = [r.object_id for r in rows if r.object_type == "schedule"]
    campaigns = Campaign.objects.filter(pk__in=in_ids(campaign_ids)) if campaign_ids else None
    brand_of = dict(campaigns.values_list("pk", "brand_id")) if campaigns is not None else {}
    following: dict[int, list[tuple[int, int]]] = defaultdict(list)
    if schedule_ids:
        for pk, brand_id, schedule_id in Campaign.objects.filter(
            schedule_id__in=in_ids(schedule_ids)
        ).values_list("pk", "brand_id", "schedule_id"):
            following[schedule_id].append((pk, brand_id))
    drafts = []
    for row in rows:
        change = {
            "object": row.object_type,
            "object_id": row.object_id,
            "name": row.object_repr,
            "field": row.field,
            "old": PRIVATE if row.field in PRIVATE_FIELDS else row.old_value,
            "new": PRIVATE if row.field in PRIVATE_FIELDS else row.new_value,
        }
        payload = {"change": change, "actor": row.actor}
        targets: list[tuple[int, int | None]]
        if row.object_type == "brand":
            targets = [(row.object_id, None)]
            kind = EventType.BRAND_SETTINGS_CHANGED
        elif row.object_type == "campaign" and row.object_id in brand_of:
            targets = [(brand_of[row.object_id], row.object_id)]
            kind = EventType.CAMPAIGN_SETTINGS_CHANGED
        elif row.object_type == "schedule":
            targets = [(brand, campaign) for campaign, brand in following[row.object_id]]
            kind = EventType.CAMPAIGN_SETTINGS_CHANGED
        else:
            continue
        drafts += [
            EventDraft(kind, brand_id, campaign_id, row.actor, payload)
            for brand_id, campaign_id in targets
        ]
    emit(drafts, at=at)
