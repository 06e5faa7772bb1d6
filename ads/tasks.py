"""Celery tasks: thin, typed, idempotent; each turns JSON arguments into one service call.

All tasks are acknowledged late (settings), so a worker lost mid-task has the task
redelivered; running any of them twice, or twice at once, leaves the same state as
once. Only database connection errors are retried, with backoff (queued spends until
the database is back); bad input is rejected and logged, never retried.
"""

import logging
from collections.abc import Callable
from functools import partial, update_wrapper
from typing import ParamSpec, TypeVar

from celery import Task, shared_task
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from ads import services
from ads.models import Campaign, SpendSource, WorkerPing
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
        return
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
    """Validate a spend now and queue it for a worker once the current transaction
    commits. Returns its idempotency key (generated when none is given): a producer
    that is unsure the spend was queued sends it again with the same key.

    Raises SpendNotQueued when the broker does not take it and no transaction is open;
    within a transaction a failure at commit is logged (the transaction has committed
    by then) and the other spends are still sent."""
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
    # Outside a transaction the hand-over happens now and a failure is raised to the
    # caller. Inside one it happens at commit; the hook is robust, so one failure does
    # not stop the spends queued after it, and each failure is logged with its key.
    # (update_wrapper: Django's robust hooks log the hook's __qualname__, which a bare
    # partial lacks.)
    transaction.on_commit(
        update_wrapper(partial(_publish, arguments), _publish),
        robust=transaction.get_connection().in_atomic_block,
    )
    return key


class SpendNotQueued(KombuOperationalError):
    """The broker did not take a spend; nothing was queued or recorded."""


# Bounded, so a caller with the broker down gets an error in seconds, not a hang:
# 3 attempts over about 1.5 s, each connect or send bounded by the socket timeouts.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 1}


def _publish(arguments: dict[str, object]) -> None:
    try:
        record_spend.apply_async(kwargs=arguments, retry=True, retry_policy=PUBLISH_RETRY)
    except KombuOperationalError as error:
        key = arguments["idempotency_key"]
        message = (
            f"spend {key} was not queued: the message broker did not answer ({error}). "
            f"Nothing was recorded; send it again with the same idempotency key {key}"
        )
        logger.error(message)
        raise SpendNotQueued(message) from error


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
