"""Spends queued for a worker, and the outbox that makes sure each one arrives.

`enqueue_spend` validates a spend, notes it in the outbox (PendingSpend) and hands it to
the broker once the transaction commits; the worker's `record_queued_spend` records it
and clears its row; `requeue_spends` sends again each spend whose message was lost.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu import Producer
from kombu.exceptions import OperationalError as KombuOperationalError

from ads.models import Brand, PendingSpend, SpendEvent, SpendSource
from ads.services.spend import SpendInput, SpendResult, currency_mismatch, record_spend
from ads.validation import (
    CAMPAIGN_UNKNOWN,
    invalid,
    parse_amount,
    parse_currency,
    parse_id,
    parse_idempotency_key,
    parse_occurred_at,
)

logger = logging.getLogger(__name__)

RECORD_SPEND_TASK = "ads.record_spend"  # the name of the task that records a queued spend
KEY_REQUIRED = "required for a queued spend, so a redelivered task is recorded once"


class SpendNotQueued(KombuOperationalError):
    """The broker did not take a spend."""


def enqueue_spend(
    campaign_id: object,
    amount: object,
    *,
    idempotency_key: object = None,
    occurred_at: object = None,
    currency: object = None,
    at: datetime | None = None,
) -> str:
    """Validate a spend now, note it in the outbox (PendingSpend) and queue it for a
    worker once the current transaction commits. Returns its idempotency key (generated
    when none is given). `at` is when it is queued (default: now); a spend without
    `occurred_at` is dated then, not when a worker gets to it. A stated `currency` that
    is not the brand's is refused now, and travels with the spend, so the worker checks
    it again under the brand's lock (and a re-sent spend keeps it).

    Outside a transaction, a broker that does not take the spend raises SpendNotQueued
    and nothing is kept: the caller sends it again with the same key. Inside one, the
    spend commits with the transaction, so a failed hand-over at commit is logged and
    `requeue_spends` sends it once the broker answers; the other spends are still sent."""
    at = at or timezone.now()
    key = parse_idempotency_key(idempotency_key)
    campaign = parse_id(campaign_id)
    brand = Brand.objects.filter(campaigns__pk=campaign).first()
    if brand is None:
        raise invalid("campaign_id", CAMPAIGN_UNKNOWN.format(value=campaign))
    arguments: dict[str, object] = {
        "campaign_id": campaign,
        "amount": str(parse_amount(amount)),
        "idempotency_key": key,
        # Dated now, not when a worker gets to it: a backlog must not shift period.
        "occurred_at": parse_occurred_at(occurred_at, at=at).isoformat(),
    }
    stated = parse_currency(currency)
    if mismatch := currency_mismatch(stated, brand):
        raise invalid("currency", mismatch)
    if stated is not None:
        # Only when stated: a message without it is one a worker of the release before
        # currencies can still run during a rolling deploy.
        arguments["currency"] = stated
    kept = transaction.get_connection().in_atomic_block
    _, created = PendingSpend.objects.get_or_create(
        idempotency_key=key,
        defaults={"arguments": arguments, "queued_at": at, "next_send_at": next_send(at, 0)},
    )
    transaction.on_commit(partial(_hand_over, arguments, kept=kept, created=created))
    return key


def _hand_over(arguments: dict[str, object], *, kept: bool, created: bool) -> None:
    key = arguments["idempotency_key"]
    try:
        publish(arguments)
    except SpendNotQueued as error:
        if kept:
            logger.error("%s It is kept and sent again once the broker answers.", error)
            return
        if created:
            PendingSpend.objects.filter(idempotency_key=key).delete()
        raise SpendNotQueued(
            f"{error} Nothing was recorded; send it again with the same idempotency key {key}"
        ) from error


# Bounded, so a caller with the broker down gets an error in seconds, not a hang:
# 3 attempts over about 1.5 s, each connect or send bounded by the socket timeouts.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 1}


def publish(arguments: dict[str, object], producer: Producer | None = None) -> None:
    """Hand one queued spend's task to the broker, or raise SpendNotQueued."""
    try:
        current_app.send_task(
            RECORD_SPEND_TASK,
            kwargs=arguments,
            retry=True,
            retry_policy=PUBLISH_RETRY,
            producer=producer,
            ignore_result=True,
        )
    except KombuOperationalError as error:
        raise SpendNotQueued(
            f"spend {arguments['idempotency_key']} was not queued: "
            f"the message broker did not answer ({error})."
        ) from error


def next_send(at: datetime, sends: int) -> datetime:
    """When a spend sent `sends` times since the first is due again if not recorded."""
    return at + timedelta(seconds=settings.SPEND_REQUEUE_AFTER * 2 ** min(sends, 4))


def record_queued_spend(
    *,
    campaign_id: object,
    amount: object,
    idempotency_key: object,
    occurred_at: object,
    currency: object = None,
) -> SpendResult:
    """Record a spend a worker took from the queue, and clear it from the outbox. A spend
    rejected (ValidationError) is cleared too: sending it again would be rejected again."""
    try:
        if idempotency_key is None:
            raise invalid("idempotency_key", KEY_REQUIRED)
        result = record_spend(
            campaign_id,
            amount,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            currency=currency,
            source=SpendSource.TASK,
        )
    except ValidationError:
        if isinstance(idempotency_key, str):
            PendingSpend.objects.filter(idempotency_key=idempotency_key).delete()
        raise
    PendingSpend.objects.filter(idempotency_key=result.event.idempotency_key).delete()
    return result


def queued_batch(events: object) -> list[SpendInput]:
    """A queued batch's JSON (a list of objects with campaign_id, amount,
    idempotency_key and optionally occurred_at and currency) as spends to record;
    ValidationError if it is not a list of objects or a row has no idempotency key."""
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise invalid("events", "must be a list of objects")
    missing = [
        f"row {n}: idempotency_key: {KEY_REQUIRED}"
        for n, event in enumerate(events, start=1)
        if event.get("idempotency_key") is None
    ]
    if missing:
        raise ValidationError({"events": missing})
    return [
        SpendInput(
            campaign_id=event.get("campaign_id"),
            amount=event.get("amount"),
            occurred_at=event.get("occurred_at"),
            idempotency_key=event.get("idempotency_key"),
            currency=event.get("currency"),
        )
        for event in events
    ]


REQUEUE_BATCH = 10_000  # per run (a minute): publishing them takes a few seconds


@dataclass(frozen=True, slots=True)
class RequeueResult:
    sent: int  # spends sent again
    cleared: int  # spends found in the ledger, cleared from the outbox
    stopped: SpendNotQueued | None = None  # the broker stopped the run here


def requeue_spends(*, at: datetime) -> RequeueResult:
    """Send again every queued spend that should long have been recorded (the outbox).
    One already in the ledger (its worker died before clearing it) is only cleared. A
    send is claimed by a conditional update, so two runs at once send it once. With the
    broker down it stops, and the next run goes on where it stopped."""
    due = list(
        PendingSpend.objects.filter(next_send_at__lte=at).order_by("next_send_at")[:REQUEUE_BATCH]
    )
    recorded = set(
        SpendEvent.objects.filter(idempotency_key__in=[p.idempotency_key for p in due]).values_list(
            "idempotency_key", flat=True
        )
    )
    cleared = PendingSpend.objects.filter(idempotency_key__in=recorded).delete()[0]
    sent = 0
    with current_app.producer_or_acquire() as producer:
        for pending in due:
            if pending.idempotency_key in recorded:
                continue
            claimed = PendingSpend.objects.filter(pk=pending.pk, sends=pending.sends).update(
                sends=F("sends") + 1, next_send_at=next_send(at, pending.sends)
            )
            if not claimed:
                continue
            try:
                publish(pending.arguments, producer)
            except SpendNotQueued as error:
                PendingSpend.objects.filter(pk=pending.pk).update(
                    sends=pending.sends, next_send_at=pending.next_send_at
                )
                return RequeueResult(sent=sent, cleared=cleared, stopped=error)
            logger.warning(
                "requeue_spends: spend %s not recorded %d s after it was queued; sent again",
                pending.idempotency_key,
                (at - pending.queued_at).total_seconds(),
            )
            sent += 1
    return RequeueResult(sent=sent, cleared=cleared)
