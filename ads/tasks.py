"""Celery tasks: thin, typed, idempotent; each turns JSON arguments into one service call.

All tasks are acknowledged late (settings), so a worker lost mid-task has the task
redelivered; running any of them twice, or twice at once, leaves the same state as
once. Only database connection errors are retried, with backoff (queued spends until
the database is back); bad input is rejected and logged, never retried.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import ParamSpec, TypeVar

from celery import Task, shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone
from kombu import Producer
from kombu.exceptions import OperationalError as KombuOperationalError

from ads import services
from ads.models import Campaign, PendingSpend, SpendEvent, SpendSource, WorkerPing
from ads.validation import (
    CAMPAIGN_UNKNOWN,
    describe,
    invalid,
    parse_amount,
    parse_id,
    parse_idempotency_key,
    parse_occurred_at,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def task(name: str, *, max_retries: int | None = 8) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A shared task with a stable name that retries database connection errors only,
    with exponential backoff (2 s, 4 s, ... at most 60 s) and at most `max_retries`
    times (None: until the database answers)."""
    return shared_task(
        name=name,
        autoretry_for=(OperationalError, InterfaceError),
        retry_backoff=2,
        retry_backoff_max=60,
        retry_jitter=True,
        max_retries=max_retries,
    )


# A periodic task that gives up is run again by Beat; a spend that gave up would be lost
# (the message is acknowledged), so spends wait for the database as long as it takes.
UNTIL_RECORDED = None


KEY_REQUIRED = "required for a queued spend, so a redelivered task is recorded once"


def _report(task: str, result: services.RefreshResult) -> None:
    logger.info(
        "%s: %d campaign state change(s), %d brand(s) rolled into a new period",
        task, len(result.changes), len(result.rolled_over),
    )  # fmt: skip


@task("ads.enforce_budget_limits")
def enforce_budget_limits() -> None:
    _report("enforce_budget_limits", services.refresh_campaign_states(
        at=timezone.now(), actor="enforce_budget_limits"
    ))  # fmt: skip


@task("ads.enforce_dayparting")
def enforce_dayparting() -> None:
    _report("enforce_dayparting", services.refresh_campaign_states(
        at=timezone.now(), actor="enforce_dayparting"
    ))  # fmt: skip


@task("ads.reset_daily_budgets")
def reset_daily_budgets() -> None:
    _report("reset_daily_budgets", services.reset_periods(
        at=timezone.now(), actor="reset_daily_budgets", period="day"
    ))  # fmt: skip


@task("ads.reset_monthly_budgets")
def reset_monthly_budgets() -> None:
    _report("reset_monthly_budgets", services.reset_periods(
        at=timezone.now(), actor="reset_monthly_budgets", period="month"
    ))  # fmt: skip


@task("ads.reconcile_spend_counters")
def reconcile_spend_counters() -> None:
    result = services.reconcile_counters(at=timezone.now(), actor="reconcile_spend_counters")
    logger.info(
        "reconcile_spend_counters: %d counter(s) repaired, %d campaign state change(s)",
        len(result.drifts), len(result.changes),
    )  # fmt: skip


@shared_task(name="ads.ping", bind=True, ignore_result=True)
def ping(self: Task[[str], None], token: str) -> None:
    """Answer `manage.py health`: proves this worker takes tasks and reaches the database."""
    WorkerPing.objects.filter(token=token, answered_at=None).update(
        answered_at=timezone.now(), worker=self.request.hostname or ""
    )


@task("ads.record_spend", max_retries=UNTIL_RECORDED)
def record_spend(
    campaign_id: object,
    amount: object,
    idempotency_key: object = None,
    occurred_at: object = None,
) -> None:
    """Record one queued spend. Arguments are JSON: ids, decimal strings, ISO times."""
    try:
        if idempotency_key is None:
            raise invalid("idempotency_key", KEY_REQUIRED)
        result = services.record_spend(
            campaign_id,
            amount,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            source=SpendSource.TASK,
        )
    except ValidationError as error:
        logger.error(
            "record_spend rejected, not retried: %s (campaign_id=%r amount=%r key=%r)",
            describe(error), campaign_id, amount, idempotency_key,
        )  # fmt: skip
        if isinstance(idempotency_key, str):  # sending it again would be rejected again
            PendingSpend.objects.filter(idempotency_key=idempotency_key).delete()
        return
    PendingSpend.objects.filter(idempotency_key=result.event.idempotency_key).delete()
    logger.info(
        "record_spend: key %s %s", result.event.idempotency_key,
        "recorded" if result.created else "was already recorded",
    )  # fmt: skip


def enqueue_spend(
    campaign_id: object,
    amount: object,
    *,
    idempotency_key: object = None,
    occurred_at: object = None,
) -> str:
    """Validate a spend now, note it in the outbox (PendingSpend) and queue it for a
    worker once the current transaction commits. Returns its idempotency key (generated
    when none is given).

    Outside a transaction, a broker that does not take the spend raises SpendNotQueued
    and nothing is kept: the caller sends it again with the same key. Inside one, the
    spend commits with the transaction, so a failed hand-over at commit is logged and
    `requeue_spends` sends it once the broker answers; the other spends are still sent."""
    at = timezone.now()
    key = parse_idempotency_key(idempotency_key)
    campaign = parse_id(campaign_id)
    if not Campaign.objects.filter(pk=campaign).exists():
        raise invalid("campaign_id", CAMPAIGN_UNKNOWN.format(value=campaign))
    arguments = {
        "campaign_id": campaign,
        "amount": str(parse_amount(amount)),
        "idempotency_key": key,
        # Dated now, not when a worker gets to it: a backlog must not shift period.
        "occurred_at": parse_occurred_at(occurred_at, at=at).isoformat(),
    }
    kept = transaction.get_connection().in_atomic_block
    _, created = PendingSpend.objects.get_or_create(
        idempotency_key=key,
        defaults={"arguments": arguments, "queued_at": at, "next_send_at": _next_send(at, 0)},
    )
    transaction.on_commit(partial(_hand_over, arguments, kept=kept, created=created))
    return key


def _hand_over(arguments: dict[str, object], *, kept: bool, created: bool) -> None:
    key = arguments["idempotency_key"]
    try:
        _publish(arguments)
    except SpendNotQueued as error:
        if kept:
            logger.error("%s It is kept and sent again once the broker answers.", error)
            return
        if created:
            PendingSpend.objects.filter(idempotency_key=key).delete()
        raise SpendNotQueued(
            f"{error} Nothing was recorded; send it again with the same idempotency key {key}"
        ) from error


class SpendNotQueued(KombuOperationalError):
    """The broker did not take a spend."""


# Bounded, so a caller with the broker down gets an error in seconds, not a hang:
# 3 attempts over about 1.5 s, each connect or send bounded by the socket timeouts.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 1}


def _publish(arguments: dict[str, object], producer: Producer | None = None) -> None:
    try:
        record_spend.apply_async(
            kwargs=arguments, retry=True, retry_policy=PUBLISH_RETRY, producer=producer
        )
    except KombuOperationalError as error:
        raise SpendNotQueued(
            f"spend {arguments['idempotency_key']} was not queued: "
            f"the message broker did not answer ({error})."
        ) from error


def _next_send(at: datetime, sends: int) -> datetime:
    """When a spend sent `sends` times since the first is due again if not recorded."""
    return at + timedelta(seconds=settings.SPEND_REQUEUE_AFTER * 2 ** min(sends, 4))


REQUEUE_BATCH = 10_000  # per run (a minute): publishing them takes a few seconds


@task("ads.requeue_spends")
def requeue_spends() -> None:
    """Send again every queued spend that should long have been recorded (the outbox).
    One already in the ledger (its worker died before clearing it) is only cleared. A
    send is claimed by a conditional update, so two runs at once send it once. With the
    broker down it stops, and the next run goes on where it stopped."""
    at = timezone.now()
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
    with record_spend.app.producer_or_acquire() as producer:
        for pending in due:
            if pending.idempotency_key in recorded:
                continue
            claimed = PendingSpend.objects.filter(pk=pending.pk, sends=pending.sends).update(
                sends=F("sends") + 1, next_send_at=_next_send(at, pending.sends)
            )
            if not claimed:
                continue
            try:
                _publish(pending.arguments, producer)
            except SpendNotQueued as error:
                PendingSpend.objects.filter(pk=pending.pk).update(
                    sends=pending.sends, next_send_at=pending.next_send_at
                )
                logger.error("requeue_spends: %s %d sent again; the next run goes on.", error, sent)
                return
            logger.warning(
                "requeue_spends: spend %s not recorded %d s after it was queued; sent again",
                pending.idempotency_key, (at - pending.queued_at).total_seconds(),
            )  # fmt: skip
            sent += 1
    if sent or cleared:  # every minute: an idle run is not worth a line
        logger.info("requeue_spends: %d sent again, %d already recorded and cleared", sent, cleared)


@task("ads.record_spend_batch", max_retries=UNTIL_RECORDED)
def record_spend_batch(events: object) -> None:
    """Record a queued batch: a JSON list of objects with campaign_id, amount,
    idempotency_key and optionally occurred_at. All or nothing; bad input is logged."""
    try:
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise invalid("events", "must be a list of objects")
        missing = [
            f"row {n}: idempotency_key: {KEY_REQUIRED}"
            for n, event in enumerate(events, start=1)
            if event.get("idempotency_key") is None
        ]
        if missing:
            raise ValidationError({"events": missing})
        result = services.record_spend_batch(
            [
                services.SpendInput(
                    campaign_id=event.get("campaign_id"),
                    amount=event.get("amount"),
                    occurred_at=event.get("occurred_at"),
                    idempotency_key=event.get("idempotency_key"),
                )
                for event in events
            ],
            source=SpendSource.TASK,
        )
    except ValidationError as error:
        logger.error("record_spend_batch rejected, not retried: %s", describe(error))
        return
    logger.info(
        "record_spend_batch: %d recorded, %d already recorded",
        result.recorded, result.already_recorded,
    )  # fmt: skip
