"""Webhooks and Slack: every event delivered at least once to each endpoint that wants
it, in event order, signed per the Standard Webhooks specification.

- Planned in the event's transaction (`plan_deliveries`, called by `events.emit`): one
  WebhookDelivery row per matching endpoint, so no event is committed without its
  deliveries. After the commit, each endpoint concerned is handed to a worker.
- Sent by `send_due` (task `ads.deliver_webhooks`, one per endpoint): under the
  endpoint's lease, its undelivered events in event order, one by one, stopping at the
  first failure, which is tried again later (30 s, doubling, at most an hour apart).
  So a campaign's events arrive in sequence, and one dead receiver costs its own
  worker at most WEBHOOK_TIMEOUT per try while the others are sent by other workers.
- `dispatch_due` (Beat's `ads.dispatch_webhooks`, every 10 s) hands over each endpoint
  with a due delivery and no sender: a lost message or a dead worker delays a delivery,
  never loses it.
- An endpoint failing for WEBHOOK_DISABLE_AFTER in a row is switched off, logged, and
  its brands' contacts are mailed (task `ads.send_endpoint_disabled_mail`).
"""

import base64
import json
import logging
import secrets
import smtplib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from celery import current_app
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from standardwebhooks import Webhook

from ads.models import (
    Brand,
    DeliveryStatus,
    EndpointKind,
    Event,
    WebhookDelivery,
    WebhookEndpoint,
)
from ads.outbound import NoAnswer, UrlRefused, origin, post
from ads.services.alerts import TRANSIENT_MAIL_ERRORS, MailServerBusy
from ads.slack import slack_text
from ads.sql import id_set

logger = logging.getLogger(__name__)

DELIVER_TASK = "ads.deliver_webhooks"  # sends one endpoint's due deliveries
DISABLED_MAIL_TASK = "ads.send_endpoint_disabled_mail"


def lease() -> timedelta:
    """How long a sender holds its endpoint past its last renewal (WEBHOOK_LEASE, 90 s):
    longer than a renewal period plus one delivery (WEBHOOK_TIMEOUT is at most 30 s,
    plus name resolution), so only a dead worker's lease lapses, and another worker
    takes over that much later."""
    return timedelta(seconds=settings.WEBHOOK_LEASE)


# How often a sender renews its lease, and reads its endpoint again: a person's switch-off
# or new URL takes effect within this many seconds of a running sender.
RENEW_EVERY = 5
# A run sends for at most this long, then hands the rest to a new task: well inside the
# task time limits, and other endpoints' tasks get the worker in between.
RUN_SECONDS = 60
BATCH = 100  # deliveries read at a time, in event order
ERROR_LENGTH = 300
USER_AGENT = "ad-budget-guard-webhooks/1"


# --- Endpoints -------------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def save_endpoint(
    endpoint: WebhookEndpoint, *, changed_fields: Sequence[str] | None, at: datetime
) -> str | None:
    """Save an endpoint a person edited: a new one (`changed_fields` None) whole, with a
    new signing secret, which is returned to be shown once; an existing one in the
    fields changed only. Switched on again, its failure is forgotten and its waiting
    deliveries are due at once."""
    if changed_fields is None:
        endpoint.secret = new_secret()
        endpoint.save()
        return endpoint.secret
    concrete = {f.name for f in endpoint._meta.concrete_fields}
    with transaction.atomic():
        endpoint.save(update_fields=[name for name in changed_fields if name in concrete])
        if "is_enabled" in changed_fields and endpoint.is_enabled:
            _switched_on([endpoint.pk], at=at)
    return None


def set_endpoints_enabled(endpoint_ids: Sequence[int], *, enabled: bool, at: datetime) -> int:
    """Switch endpoints on or off; return how many changed. Switched on, an endpoint's
    failure and switch-off are forgotten and its waiting deliveries are due now (and
    handed to a worker after the commit); switched off, no new delivery is planned and
    its sender stops before its next delivery. Waiting deliveries stay, either way."""
    with transaction.atomic():
        endpoints = WebhookEndpoint.objects.filter(pk__in=endpoint_ids)
        if not enabled:
            return endpoints.filter(is_enabled=True).update(is_enabled=False)
        off = list(
            endpoints.filter(Q(is_enabled=False) | Q(disabled_at__isnull=False))
            .select_for_update()
            .values_list("pk", flat=True)
        )
        _switched_on(off, at=at)
    return len(off)


def _switched_on(endpoint_ids: Sequence[int], *, at: datetime) -> None:
    WebhookEndpoint.objects.filter(pk__in=endpoint_ids).update(
        is_enabled=True, failing_since=None, disabled_at=None, disabled_reason=""
    )
    WebhookDelivery.objects.filter(
        endpoint_id__in=endpoint_ids, status=DeliveryStatus.PENDING
    ).update(next_attempt_at=at)
    transaction.on_commit(partial(hand_over, list(endpoint_ids)))


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """Give an endpoint a new signing secret at once; return it, to be shown once."""
    endpoint.secret = new_secret()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=endpoint.secret)
    return endpoint.secret


# --- Planning, in the event's transaction ---------------------------------------------


def plan_deliveries(event_ids: Sequence[str], *, at: datetime) -> None:
    """Write a delivery of each new event (by `event_id`) to each enabled endpoint whose
    types and brands take it, in one statement however many there are; hand the
    endpoints concerned to workers after the commit. One cheap query when no endpoint
    is enabled."""
    if not event_ids or not WebhookEndpoint.objects.filter(is_enabled=True).exists():
        return
    quote = connection.ops.quote_name
    deliveries = quote(WebhookDelivery._meta.db_table)
    events = quote(Event._meta.db_table)
    endpoints = quote(WebhookEndpoint._meta.db_table)
    through = WebhookEndpoint.brands.through._meta
    if connection.vendor == "postgresql":
        type_match = "w.event_types ? e.type"
    else:
        type_match = "EXISTS (SELECT 1 FROM json_each(w.event_types) t WHERE t.value = e.type)"
    ids_sql, ids_params = id_set(event_ids, "text")
    when = connection.ops.adapt_datetimefield_value(at)
    sql = (
        f"INSERT INTO {deliveries} (endpoint_id, event_id, status, attempts, last_status_code,"
        " last_error, last_attempt_at, next_attempt_at, delivered_at, created_at)"
        f" SELECT w.id, e.id, %s, 0, NULL, '', NULL, %s, NULL, %s"
        f" FROM {events} e JOIN {endpoints} w ON w.is_enabled"
        f" WHERE e.event_id IN ({ids_sql})"
        f" AND (w.all_types OR {type_match})"
        f" AND (w.all_brands OR EXISTS (SELECT 1 FROM {quote(through.db_table)} b"
        "  WHERE b.webhookendpoint_id = w.id AND b.brand_id = e.brand_id))"
        " ORDER BY e.id, w.id"
        " RETURNING endpoint_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [DeliveryStatus.PENDING.value, when, when, *ids_params])
        endpoint_ids = sorted({row[0] for row in cursor.fetchall()})
    if endpoint_ids:
        transaction.on_commit(partial(hand_over, endpoint_ids))


def hand_over(endpoint_ids: Iterable[int], *, expires: float | None = None) -> int:
    """Ask a worker to send each endpoint's due deliveries; return how many were asked.
    A broker that does not answer is logged: the deliveries are in the database, and
    the dispatcher hands them over once it answers."""
    asked = 0
    for endpoint_id in endpoint_ids:
        try:
            current_app.send_task(
                DELIVER_TASK,
                kwargs={"endpoint_id": endpoint_id},
                retry=False,
                ignore_result=True,
                expires=expires,
            )
        except KombuOperationalError as error:
            logger.error(
                "webhook deliveries not handed to a worker, the message broker did not answer "
                "(%s); ads.dispatch_webhooks sends them once it does",
                error,
            )
            break
        asked += 1
    return asked


def due_endpoints(*, at: datetime) -> list[int]:
    """Enabled endpoints whose earliest undelivered event is due, with no live sender."""
    head = (
        WebhookDelivery.objects.filter(endpoint=OuterRef("pk"), status=DeliveryStatus.PENDING)
        .order_by("event_id")
        .values("next_attempt_at")[:1]
    )
    return list(
        WebhookEndpoint.objects.filter(is_enabled=True)
        .annotate(head_due=Subquery(head))
        .filter(head_due__lte=at)
        .exclude(leased_until__gt=at)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def dispatch_due(*, at: datetime, expires: float | None = None) -> int:
    """Hand each endpoint with a due delivery and no sender to a worker (Beat's safety
    net: a hand-over lost at commit, a retry come due, a worker that died sending)."""
    return hand_over(due_endpoints(at=at), expires=expires)


# --- Sending ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    delivered: int = 0
    failed: int = 0  # 0 or 1: a run stops at its first failure
    busy: bool = False  # another worker holds the endpoint
    disabled: bool = False  # switched off by this run, for failing too long


@dataclass(frozen=True, slots=True)
class Attempt:
    delivered: bool
    status_code: int | None
    error: str
    retry_after: int | None = None


def send_due(
    *,
    endpoint_id: int,
    clock: Callable[[], datetime] = timezone.now,
    run_seconds: float = RUN_SECONDS,
) -> SendResult:
    """Send an endpoint's due deliveries in event order until one fails, none is due, or
    the run has taken `run_seconds` (the rest goes to a new task). Does nothing if another
    worker holds the endpoint's lease; a delivery already delivered is never sent again
    (the rows are read under the lease, and marked only if still pending)."""
    holder = uuid.uuid4().hex
    stop_at = time.monotonic() + run_seconds
    delivered = failed = runs = 0
    disabled = False
    while _claim(endpoint_id, holder, clock()):
        runs += 1
        try:
            run = _send_run(endpoint_id, holder, clock, stop_at)
        finally:
            WebhookEndpoint.objects.filter(pk=endpoint_id, lease_holder=holder).update(
                leased_until=None, lease_holder=""
            )
        delivered += run.delivered
        failed += run.failed
        disabled = disabled or run.disabled
        if run.failed or run.disabled or not run.delivered:
            break  # failed, switched off, or nothing was due
        due = endpoint_id in due_endpoints(at=clock())
        if due and time.monotonic() >= stop_at:
            hand_over([endpoint_id])  # the rest in a new task
            break
        if not due:
            break
        # Due again: a delivery committed while this run held the lease, whose task was
        # turned away. Go on with it.
    return SendResult(delivered, failed, busy=runs == 0, disabled=disabled)


def _claim(endpoint_id: int, holder: str, at: datetime) -> bool:
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint_id, is_enabled=True)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=at))
        .update(leased_until=at + lease(), lease_holder=holder)
    )


def _send_run(
    endpoint_id: int, holder: str, clock: Callable[[], datetime], stop_at: float
) -> SendResult:
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    renewed = time.monotonic()  # just claimed
    delivered = 0
    while time.monotonic() < stop_at:
        batch = list(
            WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status=DeliveryStatus.PENDING)
            .select_related("event")
            .order_by("event_id")[:BATCH]
        )
        if not batch:
            break
        for delivery in batch:
            at = clock()
            if delivery.next_attempt_at is not None and delivery.next_attempt_at > at:
                return SendResult(delivered)  # the earliest waits: so do the others
            if time.monotonic() >= stop_at:
                return SendResult(delivered)  # the rest in a new task
            if time.monotonic() - renewed >= RENEW_EVERY:
                if not _renew(endpoint_id, holder, at):
                    return SendResult(delivered)  # switched off meanwhile
                endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)  # edited meanwhile?
                renewed = time.monotonic()
            attempt = attempt_delivery(endpoint, delivery.event, at=at)
            done = clock()
            if attempt.delivered:
                _delivered(endpoint, delivery, attempt, at=done)
                delivered += 1
                continue
            disabled = _failed(endpoint, delivery, attempt, at=done)
            return SendResult(delivered, failed=1, disabled=disabled)
    return SendResult(delivered)


def _renew(endpoint_id: int, holder: str, at: datetime) -> bool:
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint_id, lease_holder=holder, is_enabled=True).update(
            leased_until=at + lease()
        )
    )


def _delivered(
    endpoint: WebhookEndpoint, delivery: WebhookDelivery, attempt: Attempt, *, at: datetime
) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.DELIVERED,
        attempts=F("attempts") + 1,
        last_status_code=attempt.status_code,
        last_error="",
        last_attempt_at=at,
        next_attempt_at=None,
        delivered_at=at,
    )
    if endpoint.failing_since is not None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        logger.info(
            "webhook endpoint %s (%s) answers again, after failing since %s",
            endpoint.name,
            origin(endpoint.url),
            endpoint.failing_since.isoformat(),
        )
        endpoint.failing_since = None


def retry_delay(attempts: int, retry_after: int | None = None) -> timedelta:
    """How long after its `attempts`-th failed try a delivery is tried again: 30 s,
    doubling, at most an hour; longer if the receiver asked for it (Retry-After)."""
    first = timedelta(seconds=settings.WEBHOOK_FIRST_RETRY)
    longest = timedelta(seconds=settings.WEBHOOK_LONGEST_RETRY)
    delay = min(first * (1 << min(max(attempts - 1, 0), 16)), longest)
    if retry_after is not None:
        delay = max(delay, min(timedelta(seconds=retry_after), longest))
    return delay


def _failed(
    endpoint: WebhookEndpoint, delivery: WebhookDelivery, attempt: Attempt, *, at: datetime
) -> bool:
    """Note a failed try and when the next is due; switch the endpoint off once it has
    failed for WEBHOOK_DISABLE_AFTER in a row. Returns whether it was switched off."""
    attempts = delivery.attempts + 1
    next_at = at + retry_delay(attempts, attempt.retry_after)
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        attempts=F("attempts") + 1,
        last_status_code=attempt.status_code,
        last_error=attempt.error[:ERROR_LENGTH],
        last_attempt_at=at,
        next_attempt_at=next_at,
    )
    if endpoint.failing_since is None:
        endpoint.failing_since = at
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
            failing_since=at
        )
    logger.warning(
        "webhook %s to endpoint %s (%s) failed (try %d): %s; next try at %s",
        delivery.event.event_id,
        endpoint.name,
        origin(endpoint.url),
        attempts,
        attempt.error,
        next_at.isoformat(timespec="seconds"),
    )
    failing_for = at - endpoint.failing_since
    if failing_for < timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER):
        return False
    return disable_failing(endpoint, last_error=attempt.error, at=at)


def disable_failing(endpoint: WebhookEndpoint, *, last_error: str, at: datetime) -> bool:
    """Switch off an endpoint that failed too long, say why, and mail its brands'
    contacts after the commit. Returns False if it was already off."""
    since = endpoint.failing_since or at
    reason = (
        f"failing since {since:%Y-%m-%d %H:%M} UTC ({hours(at - since)} h); "
        f"last error: {last_error}"
    )[:ERROR_LENGTH]
    with transaction.atomic():
        switched = WebhookEndpoint.objects.filter(pk=endpoint.pk, is_enabled=True).update(
            is_enabled=False, disabled_at=at, disabled_reason=reason
        )
        if switched:
            transaction.on_commit(partial(_queue_disabled_mail, endpoint.pk))
    if switched:
        logger.error(
            "webhook endpoint %s (%s) switched off: %s. Its undelivered events wait; switch it "
            "on again in the admin once the receiver answers.",
            endpoint.name,
            origin(endpoint.url),
            reason,
        )
    return bool(switched)


def hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.1f}"


def _queue_disabled_mail(endpoint_id: int) -> None:
    try:
        current_app.send_task(
            DISABLED_MAIL_TASK, kwargs={"endpoint_id": endpoint_id}, retry=False, ignore_result=True
        )
    except KombuOperationalError as error:
        logger.error(
            "the mail saying endpoint %s was switched off was not queued, the message broker "
            "did not answer (%s)",
            endpoint_id,
            error,
        )


# --- One request ----------------------------------------------------------------------


def event_data(event: Event) -> dict[str, object]:
    """The event as receivers get it (the pull feed's shape)."""
    return {
        "id": event.event_id,
        "type": event.type,
        "created_at": iso(event.created_at),
        "brand_id": event.brand_id,
        "campaign_id": event.campaign_id,
        "stream": event.stream,
        "sequence": event.sequence,
        "payload": event.payload,
    }


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def request_body(endpoint: WebhookEndpoint, event: Event) -> str:
    if endpoint.kind == EndpointKind.SLACK:
        return json.dumps(
            {"text": slack_text(event.type, event.payload, site_url=settings.SITE_URL)}
        )
    return json.dumps(
        {"type": event.type, "timestamp": iso(event.created_at), "data": event_data(event)},
        separators=(",", ":"),
    )


def signed_headers(secret: str, event_id: str, body: str, *, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers: the event's id (the same on every try), the time of
    this try, and the HMAC-SHA256 signature of both with the body."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, body),
    }


def attempt_delivery(endpoint: WebhookEndpoint, event: Event, *, at: datetime) -> Attempt:
    """POST one event to an endpoint: delivered on a 2xx within WEBHOOK_TIMEOUT."""
    body = request_body(endpoint, event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signed_headers(endpoint.secret, event.event_id, body, at=at),
    }
    try:
        answer = post(endpoint.url, body.encode(), headers, timeout=float(settings.WEBHOOK_TIMEOUT))
    except UrlRefused as refused:
        return Attempt(False, None, f"refused: the URL {refused}")
    except NoAnswer as error:
        return Attempt(False, None, str(error))
    if 200 <= answer.status < 300:
        return Attempt(True, answer.status, "")
    if 300 <= answer.status < 400:
        where = answer.location or "no Location"
        return Attempt(
            False, answer.status, f"HTTP {answer.status}: redirect to {where} not followed"
        )
    said = f": {answer.excerpt}" if answer.excerpt else ""
    return Attempt(False, answer.status, f"HTTP {answer.status}{said}", answer.retry_after)


# --- Sending again, on request ---------------------------------------------------------


def send_again(delivery_ids: Sequence[int], *, at: datetime) -> int:
    """Deliveries chosen by a person go out again (delivered ones too): pending and due
    now, in event order with the endpoint's other undelivered events; handed to workers
    after the commit. Returns how many."""
    with transaction.atomic():
        chosen = WebhookDelivery.objects.filter(pk__in=delivery_ids)
        endpoint_ids = sorted(set(chosen.values_list("endpoint_id", flat=True)))
        count = chosen.update(status=DeliveryStatus.PENDING, next_attempt_at=at, delivered_at=None)
        transaction.on_commit(partial(hand_over, endpoint_ids))
    return count


# --- The mail when an endpoint is switched off -----------------------------------------


def endpoint_contacts(endpoint: WebhookEndpoint) -> list[str]:
    """The contact addresses of the brands an endpoint serves, each once."""
    brands = Brand.objects.all() if endpoint.all_brands else endpoint.brands.all()
    return sorted(set(brands.exclude(contact_email="").values_list("contact_email", flat=True)))


def send_disabled_mail(*, endpoint_id: int) -> int:
    """Mail each contact of the endpoint's brands, one mail each, that it was switched
    off and why; return how many mails went out. Raises TRANSIENT_MAIL_ERRORS for the
    task to try again; other failures are logged (the admin shows the switch-off)."""
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, disabled_at__isnull=False).first()
    if endpoint is None:  # deleted, or switched on again meanwhile
        return 0
    recipients = endpoint_contacts(endpoint)
    if not recipients:
        logger.warning("webhook endpoint %s switched off; no brand contact to mail", endpoint.name)
        return 0
    link = settings.SITE_URL + reverse("admin:ads_webhookendpoint_change", args=[endpoint.pk])
    subject = f"Webhook endpoint {endpoint.name} switched off: its receiver keeps failing"
    body = (
        f"The endpoint {endpoint.name} ({origin(endpoint.url)}) was switched off on "
        f"{endpoint.disabled_at:%Y-%m-%d %H:%M} UTC: {endpoint.disabled_reason}.\n\n"
        "No event is sent to it until it is switched on again. Its undelivered events are "
        "kept, and go out in order once it is; events of the time in between are in the "
        "event feed (GET /api/v1/events).\n\n"
        f"Once the receiver answers, switch the endpoint on again: {link}\n"
    )
    messages = [
        EmailMessage(subject=subject, body=body, to=[recipient]) for recipient in recipients
    ]
    try:
        return get_connection().send_messages(messages) or 0
    except TRANSIENT_MAIL_ERRORS:
        raise
    except smtplib.SMTPResponseException as error:
        if 400 <= error.smtp_code < 500:
            raise MailServerBusy(f"{error.smtp_code} {error.smtp_error!r}") from error
        _log_mail_failure(endpoint, error)
    except (smtplib.SMTPException, OSError) as error:
        _log_mail_failure(endpoint, error)
    return 0


def _log_mail_failure(endpoint: WebhookEndpoint, error: Exception) -> None:
    logger.error(
        "the mail saying webhook endpoint %s was switched off failed (%s: %s)",
        endpoint.name,
        type(error).__name__,
        error,
    )
