"""Celery tasks: thin, typed, idempotent; each turns JSON arguments into one service call.

All tasks are acknowledged late (settings), so a worker lost mid-task has the task
redelivered; running any of them twice, or twice at once, leaves the same state as
once. Only database connection errors are retried, with backoff (queued spends until
the database is back); bad input is rejected and logged, never retried.
"""

import logging
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import ParamSpec, TypeVar

from celery import Task, shared_task
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ads import services
from ads.models import SpendSource, WorkerPing
from ads.services import alerts, outbox, webhooks
from ads.services.outbox import SpendNotQueued, enqueue_spend
from ads.validation import describe

# Spends are queued with enqueue_spend (it lives in the services; imported from here too).
__all__ = [
    "SpendNotQueued",
    "deliver_webhooks",
    "dispatch_webhooks",
    "enforce_budget_limits",
    "enforce_dayparting",
    "enqueue_spend",
    "ping",
    "reconcile_spend_counters",
    "record_spend",
    "record_spend_batch",
    "requeue_spends",
    "reset_daily_budgets",
    "reset_monthly_budgets",
    "send_budget_alert_mail",
    "send_endpoint_disabled_mail",
]

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


def mail_task(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A task that sends mail: it retries the database's connection errors and a mail
    server that cannot be reached or is busy, 30 s to 10 minutes apart, 5 times."""
    return shared_task(
        name=name,
        ignore_result=True,
        autoretry_for=(OperationalError, InterfaceError, *alerts.TRANSIENT_MAIL_ERRORS),
        retry_backoff=30,
        retry_backoff_max=600,
        retry_jitter=True,
        max_retries=5,
    )


# A periodic task that gives up is run again by Beat; a spend that gave up would be lost
# (the message is acknowledged), so spends wait for the database as long as it takes.
UNTIL_RECORDED = None


def _report(task: str, result: services.RefreshResult) -> None:
    logger.info(
        "%s: %d campaign state change(s), %d brand(s) rolled into a new period",
        task,
        len(result.changes),
        len(result.rolled_over),
    )


@task("ads.enforce_budget_limits")
def enforce_budget_limits() -> None:
    actor = "enforce_budget_limits"
    _report(actor, services.refresh_campaign_states(at=timezone.now(), actor=actor))


@task("ads.enforce_dayparting")
def enforce_dayparting() -> None:
    actor = "enforce_dayparting"
    _report(actor, services.refresh_campaign_states(at=timezone.now(), actor=actor))


@task("ads.reset_daily_budgets")
def reset_daily_budgets() -> None:
    actor = "reset_daily_budgets"
    _report(actor, services.reset_periods(at=timezone.now(), actor=actor, period="day"))


@task("ads.reset_monthly_budgets")
def reset_monthly_budgets() -> None:
    actor = "reset_monthly_budgets"
    _report(actor, services.reset_periods(at=timezone.now(), actor=actor, period="month"))


@task("ads.reconcile_spend_counters")
def reconcile_spend_counters() -> None:
    result = services.reconcile_counters(at=timezone.now(), actor="reconcile_spend_counters")
    logger.info(
        "reconcile_spend_counters: %d counter(s) repaired, %d campaign state change(s)",
        len(result.drifts),
        len(result.changes),
    )


@shared_task(name="ads.ping", bind=True, ignore_result=True)
def ping(self: Task[[str], None], token: str) -> None:
    """Answer `manage.py health`: proves this worker takes tasks and reaches the database."""
    WorkerPing.objects.filter(token=token, answered_at=None).update(
        answered_at=timezone.now(), worker=self.request.hostname or ""
    )


@task(outbox.RECORD_SPEND_TASK, max_retries=UNTIL_RECORDED)
def record_spend(
    campaign_id: object,
    amount: object,
    idempotency_key: object = None,
    occurred_at: object = None,
    currency: object = None,
) -> None:
    """Record one queued spend. Arguments are JSON: ids, decimal strings, ISO times, and
    optionally the ISO 4217 code the amount is in (refused unless it is the brand's)."""
    try:
        result = outbox.record_queued_spend(
            campaign_id=campaign_id,
            amount=amount,
            idempotency_key=idempotency_key,
            occurred_at=occurred_at,
            currency=currency,
        )
    except ValidationError as error:
        arguments = f"campaign_id={campaign_id!r} amount={amount!r} key={idempotency_key!r}"
        if currency is not None:
            arguments += f" currency={currency!r}"
        logger.error("record_spend rejected, not retried: %s (%s)", describe(error), arguments)
        return
    done = "recorded" if result.created else "was already recorded"
    logger.info("record_spend: key %s %s", result.event.idempotency_key, done)


@task("ads.requeue_spends")
def requeue_spends() -> None:
    """Send again the queued spends that should long have been recorded (the outbox)."""
    result = outbox.requeue_spends(at=timezone.now())
    if result.stopped is not None:
        logger.error(
            "requeue_spends: %s %d sent again; the next run goes on.", result.stopped, result.sent
        )
    elif result.sent or result.cleared:  # every minute: an idle run is not worth a line
        logger.info(
            "requeue_spends: %d sent again, %d already recorded and cleared",
            result.sent,
            result.cleared,
        )


@task("ads.record_spend_batch", max_retries=UNTIL_RECORDED)
def record_spend_batch(events: object) -> None:
    """Record a queued batch: a JSON list of objects with campaign_id, amount,
    idempotency_key and optionally occurred_at and currency (refused unless it is the
    brand's). All or nothing; bad input is logged."""
    try:
        spends = outbox.queued_batch(events)
        result = services.record_spend_batch(spends, source=SpendSource.TASK)
    except ValidationError as error:
        logger.error("record_spend_batch rejected, not retried: %s", describe(error))
        return
    logger.info(
        "record_spend_batch: %d recorded, %d already recorded",
        result.recorded,
        result.already_recorded,
    )


@mail_task(alerts.ALERT_MAIL_TASK)
def send_budget_alert_mail(
    brand_id: int, budget_kind: str, threshold: int, period: str, budget: str
) -> None:
    """E-mail one budget alert (named by its crossing) to its brand's contact. A mail
    server that is unreachable, hangs up, times out or says "later" is tried again 5
    times, 30 s to 10 min apart; other mail failures are logged, not retried."""
    crossing = alerts.Crossing(
        brand_id, budget_kind, threshold, date.fromisoformat(period), Decimal(budget)
    )
    if alerts.send_alert_mail(crossing=crossing):
        logger.info(
            "send_budget_alert_mail: %s %d%% alert of brand %s mailed",
            budget_kind,
            threshold,
            brand_id,
        )


@task(webhooks.DELIVER_TASK)
def deliver_webhooks(endpoint_id: int) -> None:
    """Send one endpoint's due deliveries, in event order, until one fails. Nothing if
    another worker is sending them: one sender per endpoint keeps its order."""
    result = webhooks.send_due(endpoint_id=endpoint_id)
    if result.delivered or result.failed:
        logger.info(
            "deliver_webhooks: endpoint %s: %d delivered%s",
            endpoint_id,
            result.delivered,
            ", then one failed (tried again later)" if result.failed else "",
        )


# Every 10 s; expires after 8 s, so a backlog of them is not run in a row.
DISPATCH_EXPIRES = 8


@task("ads.dispatch_webhooks")
def dispatch_webhooks() -> None:
    """Hand each endpoint with a due delivery and no sender to a worker: retries come
    due, and nothing is lost when a hand-over at commit or a worker was."""
    asked = webhooks.dispatch_due(at=timezone.now(), expires=DISPATCH_EXPIRES)
    if asked:
        logger.info("dispatch_webhooks: %d endpoint(s) with due deliveries handed over", asked)


@mail_task(webhooks.DISABLED_MAIL_TASK)
def send_endpoint_disabled_mail(endpoint_id: int) -> None:
    """Tell the contacts of an endpoint's brands that it was switched off for failing.
    Retried like the budget alert mails."""
    sent = webhooks.send_disabled_mail(endpoint_id=endpoint_id)
    if sent:
        logger.info(
            "send_endpoint_disabled_mail: endpoint %s: %d contact(s) mailed", endpoint_id, sent
        )
