from collections.abc import Iterable, Mapping
from datetime import datetime, time
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Combinable, Expression

from ads.money import (
    BUDGET_DECIMAL_PLACES,
    MAX_BUDGET,
    MICRO,
    MoneyField,
    budget_places_error,
    currency_choices,
    from_micros,
)
from ads.rules import EVERY_DAY, CountingPeriod, PauseReason, Window, counting_period
from ads.validation import MAX_KEY_LENGTH

# The largest value a micros counter can hold: counters sum many spends.
MAX_COUNTER = from_micros(2**63 - 1).quantize(MICRO)

TIMEZONE_UNKNOWN = "{value} is not a known IANA time zone (for example Europe/Paris or UTC)"


@cache
def brand_zones() -> frozenset[str]:
    """IANA zones a brand can be in: not the host's own `localtime` (it differs between
    machines), tzdata's `Factory` or the `posix/` and `right/` copies."""
    return frozenset(
        zone
        for zone in available_timezones()
        if zone not in {"localtime", "Factory", "posixrules"}
        and not zone.startswith(("posix/", "right/"))
    )


def validate_timezone(value: str) -> None:
    if value not in brand_zones():
        raise ValidationError(TIMEZONE_UNKNOWN.format(value=repr(value)), code="invalid")


def default_currency() -> str:
    return settings.DEFAULT_CURRENCY


def budget_errors(currency: str, budgets: Mapping[str, Decimal | None]) -> dict[str, str]:
    """Each budget with more decimal places than `currency` has, and why."""
    errors = {}
    for field, amount in budgets.items():
        if amount is not None and (error := budget_places_error(amount, currency)):
            errors[field] = error
    return errors


def budget_field(**kwargs: Any) -> MoneyField:
    return MoneyField(decimal_places=BUDGET_DECIMAL_PLACES, max_value=MAX_BUDGET, **kwargs)


def counter_field(verbose_name: str) -> MoneyField:
    """A spend counter: kept by the services only, never edited by hand."""
    return MoneyField(verbose_name, default=Decimal(0), editable=False, max_value=MAX_COUNTER)


class PauseReasonsField(models.CharField[Iterable[str] | Combinable, tuple[PauseReason, ...]]):
    """A set of pause reasons, stored as comma-separated codes in canonical order.

    Canonical order makes equal sets equal strings, so queries can compare them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 200)
        kwargs.setdefault("default", "")
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> tuple[PauseReason, ...]:
        return self.to_python(value)

    def to_python(self, value: Any) -> tuple[PauseReason, ...]:
        if not value:
            return ()
        codes = value.split(",") if isinstance(value, str) else list(value)
        return tuple(reason for reason in PauseReason if reason.value in codes)

    def get_prep_value(self, value: Any) -> str:
        return ",".join(self.to_python(value))


TIME_OFF_GRID = "{value} is not on the 15-minute grid; use :00, :15, :30 or :45"
WEEKDAYS_EMPTY = "choose at least one weekday"


def validate_quarter_hour(value: time) -> None:
    if value.minute % 15 or value.second or value.microsecond:
        exact = not (value.second or value.microsecond)
        shown = value.strftime("%H:%M") if exact else value.isoformat()
        raise ValidationError(TIME_OFF_GRID.format(value=shown), code="off_grid")


def validate_weekdays(value: int) -> None:
    if not 0 < value <= EVERY_DAY:
        raise ValidationError(WEEKDAYS_EMPTY, code="no_weekdays")


class Schedule(models.Model):
    """A named, reusable dayparting schedule: the union of its windows."""

    name = models.CharField(max_length=200, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def rule_windows(self) -> list[Window]:
        return [w.as_rule() for w in self.windows.all()]


class ScheduleWindow(models.Model):
    """Weekdays and a wall-clock interval [start, end) in the brand's time zone.

    end <= start runs overnight into the next day; start == end is 24 hours.
    """

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="windows")
    weekdays = models.PositiveSmallIntegerField(
        default=EVERY_DAY,
        validators=[validate_weekdays],
        help_text="Bit mask, Monday = 1, Tuesday = 2, ... Sunday = 64.",
    )
    start = models.TimeField(validators=[validate_quarter_hour])
    end = models.TimeField(
        validators=[validate_quarter_hour],
        help_text="At or before the start: runs overnight into the next day.",
    )

    class Meta:
        ordering = ["schedule", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(weekdays__gte=1, weekdays__lte=EVERY_DAY),
                name="window_weekdays_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.as_rule().label

    def as_rule(self) -> Window:
        return Window(weekdays=self.weekdays, start=self.start, end=self.end)


class Brand(models.Model):
    name = models.CharField(max_length=200, unique=True)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="IANA time zone of the brand's days, months and schedules.",
    )
    currency = models.CharField(
        max_length=3,
        choices=currency_choices,
        default=default_currency,
        help_text="ISO 4217. Budgets and spend are in this currency; fixed once the brand "
        "has spend (as on the ad platforms: make a new brand to pay in another).",
    )
    daily_budget = budget_field(help_text="Spend allowed per local day. 0 allows nothing.")
    monthly_budget = budget_field(help_text="Spend allowed per local calendar month.")
    is_active = models.BooleanField(
        default=True, help_text="Master switch: off pauses every campaign of the brand."
    )
    contact_email = models.EmailField(
        blank=True, help_text="Receives budget alerts at 50 %, 80 % and 100 %."
    )
    current_daily_spend = counter_field("spend today")
    current_monthly_spend = counter_field("spend this month")
    # The local day and the first day of the local month the counters belong to;
    # null until the first roll-over. See services.roll_over.
    counters_day = models.DateField(null=True, editable=False)
    counters_month = models.DateField(null=True, editable=False)
    # Archived: switched off and out of lists, dashboards and enforcement passes; its
    # ledger rows and audit stay. See services.archive.
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(daily_budget__gte=0), name="brand_daily_budget_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(monthly_budget__gte=0),
                name="brand_monthly_budget_non_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(current_daily_spend__gte=0, current_monthly_spend__gte=0),
                name="brand_spend_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        budgets = {"daily_budget": self.daily_budget, "monthly_budget": self.monthly_budget}
        if errors := budget_errors(self.currency, budgets):
            raise ValidationError(errors)

    def counting_period(self, at: datetime) -> CountingPeriod:
        """The local day and month a spend recorded at `at` counts in (see
        rules.counting_period)."""
        return counting_period(at, self.zone, self.counters_day)

    def spend_today(self, at: datetime) -> Decimal:
        """The daily counter, for display at `at`: 0 once the brand's local day has
        changed and no roll-over has happened yet (it still holds the previous day's)."""
        current = self.counters_day == self.counting_period(at).day
        return self.current_daily_spend if current else Decimal(0)

    def spend_this_month(self, at: datetime) -> Decimal:
        """The monthly counter, for display at `at`; 0 when it belongs to an earlier month."""
        current = self.counters_month == self.counting_period(at).month
        return self.current_monthly_spend if current else Decimal(0)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Campaign(models.Model):
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    is_enabled = models.BooleanField(
        "enabled",
        default=True,
        help_text="A person's choice. Automation never turns on a disabled campaign.",
    )
    is_active = models.BooleanField(
        "running", default=False, editable=False, help_text="Kept by the system."
    )
    pause_reasons = PauseReasonsField(editable=False)
    daily_budget = budget_field(
        null=True, blank=True, help_text="Optional; empty means only the brand's budgets apply."
    )
    daily_spend = counter_field("spend today")
    schedule = models.ForeignKey(
        Schedule,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        help_text="Empty means the campaign may run at any time.",
    )
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["brand__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "name"], name="campaign_name_unique_in_brand"),
            models.CheckConstraint(
                condition=models.Q(daily_budget__isnull=True) | models.Q(daily_budget__gte=0),
                name="campaign_daily_budget_non_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(daily_spend__gte=0), name="campaign_spend_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.brand.name})"

    def clean(self) -> None:
        if self.brand_id is None:
            return
        if errors := budget_errors(self.brand.currency, {"daily_budget": self.daily_budget}):
            raise ValidationError(errors)

    def spend_today(self, at: datetime) -> Decimal:
        """The daily counter, for display at `at`: it belongs to the brand's counters'
        day, so it reads 0 once the brand's local day has changed before a roll-over."""
        current = self.brand.counters_day == self.brand.counting_period(at).day
        return self.daily_spend if current else Decimal(0)


class SpendSource(models.TextChoices):
    CLI = "cli", "Command line"
    TASK = "task", "Celery task"
    ADMIN = "admin", "Admin"
    API = "api", "HTTP API"


class SpendEvent(models.Model):
    """One spend in the append-only ledger: the truth the counters are kept from."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="spend_events")
    # Denormalized from the campaign so a brand's period sums read one index.
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="spend_events")
    amount = MoneyField()
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=SpendSource.choices)
    idempotency_key = models.CharField(max_length=MAX_KEY_LENGTH, unique=True)

    class Meta:
        ordering = ["-recorded_at", "-pk"]
        indexes = [
            models.Index(fields=["brand", "occurred_at"], name="spend_brand_occurred"),
            models.Index(fields=["campaign", "occurred_at"], name="spend_campaign_occurred"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="spend_amount_positive"),
            models.CheckConstraint(
                condition=~models.Q(idempotency_key=""), name="spend_idempotency_key_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} on campaign {self.campaign_id} at {self.occurred_at:%Y-%m-%d %H:%M}"


class CampaignStatusChange(models.Model):
    """Audit row for every change of a campaign's `is_active` or `pause_reasons`."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="status_changes")
    changed_at = models.DateTimeField(db_index=True)
    old_is_active = models.BooleanField()
    new_is_active = models.BooleanField()
    old_pause_reasons = PauseReasonsField()
    new_pause_reasons = PauseReasonsField()
    reason = models.CharField(max_length=300)
    actor = models.CharField(
        max_length=150, help_text="The admin user, 'spend', or the task's name."
    )

    class Meta:
        ordering = ["-changed_at", "-pk"]
        verbose_name = "campaign status change"

    def __str__(self) -> str:
        return f"{self.campaign_id}: {self.reason} by {self.actor}"


class SettingChange(models.Model):
    """Audit row for a budget, schedule or switch changed by a person (SPEC 10)."""

    changed_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=150)
    object_type = models.CharField(max_length=50)
    object_id = models.BigIntegerField()
    object_repr = models.CharField(max_length=300)
    field = models.CharField(max_length=100)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)

    class Meta:
        ordering = ["-changed_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.object_repr}.{self.field}: {self.old_value} -> {self.new_value}"


class BudgetKind(models.TextChoices):
    DAILY = "daily", "Daily"
    MONTHLY = "monthly", "Monthly"


class BudgetAlert(models.Model):
    """A brand's spend crossed a share of a budget: one per threshold, period and budget
    in force, so a budget raised (or lowered) and crossed again alerts again."""

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="alerts")
    budget_kind = models.CharField(max_length=10, choices=BudgetKind.choices)
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the budget.")
    period = models.DateField(help_text="The local day, or the first day of the local month.")
    created_at = models.DateTimeField(db_index=True)
    spend = MoneyField(max_value=MAX_COUNTER)
    budget = budget_field()
    emailed_to = models.EmailField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["brand", "budget_kind", "threshold", "period", "budget"],
                name="one_alert_per_crossing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand_id}: {self.budget_kind} budget {self.threshold} % on {self.period}"


class ApiKey(models.Model):
    """A key for the HTTP API. Only a SHA-256 of the secret is stored: the key is shown
    once, when created. Keys are long random tokens, so a fast hash is enough."""

    name = models.CharField(
        max_length=100, help_text="Who or what uses it, e.g. 'Google Ads feed'."
    )
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    all_brands = models.BooleanField(
        "all brands",
        default=False,
        help_text="Every brand, including brands added later. Otherwise only the brands "
        "chosen below.",
    )
    # Explicit, not "no brands means all": a key limited to brands that were since
    # deleted must see nothing.
    brands = models.ManyToManyField(Brand, blank=True, related_name="api_keys")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class WorkerPing(models.Model):
    """A round trip through the broker to a worker and back through the database, made by
    `manage.py health`: a worker that answers can take tasks and write, not only talk
    to the broker."""

    token = models.CharField(max_length=64, unique=True)
    sent_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True)
    worker = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"ping {self.token} ({'answered' if self.answered_at else 'waiting'})"


class PendingSpend(models.Model):
    """The outbox of queued spends: written with the spend's hand-over to the broker and
    deleted once a worker has recorded (or rejected) it. A message can be lost on the
    way: Redis without persistence restarts, or a worker's main process dies between
    taking a message off the queue and noting it as unacknowledged (a window in kombu's
    Redis transport that late acks cannot close). `ads.requeue_spends` sends again
    whatever is still here when it should long have been recorded; the idempotency key
    makes a second delivery harmless."""

    idempotency_key = models.CharField(max_length=MAX_KEY_LENGTH, unique=True)
    arguments = models.JSONField()  # the `record_spend` task's keyword arguments
    queued_at = models.DateTimeField()
    sends = models.PositiveIntegerField(default=1)
    next_send_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"pending spend {self.idempotency_key} (sent {self.sends}×)"


class EventType(models.TextChoices):
    CAMPAIGN_PAUSED = "campaign.paused", "Campaign paused"
    CAMPAIGN_RESUMED = "campaign.resumed", "Campaign resumed"
    CAMPAIGN_REASONS_CHANGED = "campaign.reasons_changed", "Campaign's pause reasons changed"
    CAMPAIGN_SETTINGS_CHANGED = "campaign.settings_changed", "Campaign settings changed"
    BUDGET_THRESHOLD_REACHED = "budget.threshold_reached", "Budget threshold reached"
    BRAND_SETTINGS_CHANGED = "brand.settings_changed", "Brand settings changed"


class Event(models.Model):
    """One decision or change, for the systems outside (the feed and the webhooks):
    append-only, written in the transaction of the change it describes.

    Events of one campaign form a stream (`campaign:<id>`), numbered 1, 2, 3... without
    gaps; a brand's own events (alerts, its settings) form `brand:<id>`. Sequences are
    assigned under the brand's lock, so a receiver that has sequence n of a stream can
    drop anything at or below it."""

    event_id = models.CharField(max_length=40, unique=True, editable=False)
    type = models.CharField(max_length=40, choices=EventType.choices)
    created_at = models.DateTimeField(db_index=True)
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="events")
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    stream = models.CharField(max_length=40)
    sequence = models.PositiveBigIntegerField()
    actor = models.CharField(max_length=150)
    payload = models.JSONField()
    # The writing transaction's id on PostgreSQL, raised to the stream's previous event's
    # when that is higher, so a stream's events are in sequence order in the feed (0 on
    # SQLite, where one writer at a time commits in id order). The feed orders by
    # (txid, id) and serves only transactions older than every one still running, so an
    # event committed late with a low id is never skipped by a reader that has passed
    # it. See ads.services.events and ads.selectors.event_feed.
    txid = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["stream", "sequence"], name="event_sequence_unique"),
        ]
        indexes = [
            models.Index(fields=["txid", "id"], name="event_feed_order"),
            models.Index(fields=["brand", "txid", "id"], name="event_brand_feed_order"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} {self.stream}#{self.sequence}"


class EndpointKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (signed JSON, Standard Webhooks)"
    SLACK = "slack", "Slack incoming webhook"


class WebhookEndpoint(models.Model):
    """A receiver of events: a webhook (each event as signed JSON) or a Slack channel
    (a line people read). Deliveries are planned in the transaction that writes the
    events (ads.services.webhooks), for the enabled endpoints whose types and brands
    match, and sent by workers in event order, one endpoint at a time."""

    name = models.CharField(max_length=100, help_text="Who receives it, e.g. 'DSP connector'.")
    kind = models.CharField(
        max_length=10, choices=EndpointKind.choices, default=EndpointKind.WEBHOOK
    )
    url = models.URLField(
        "URL",
        max_length=2000,
        help_text="https:// and a public address. For Slack, the channel's incoming-webhook URL.",
    )
    all_types = models.BooleanField(
        "all event types",
        default=False,
        help_text="Every type, including types added later. Otherwise only the types chosen.",
    )
    event_types = models.JSONField(default=list, blank=True)  # EventType values
    all_brands = models.BooleanField(
        "all brands",
        default=False,
        help_text="Every brand, including brands added later. Otherwise only the brands "
        "chosen below.",
    )
    # Explicit, as for API keys: an endpoint limited to brands since deleted gets nothing.
    brands = models.ManyToManyField(Brand, blank=True, related_name="webhook_endpoints")
    is_enabled = models.BooleanField(
        "enabled",
        default=True,
        help_text="Off: no new deliveries are planned and none is sent. Undelivered ones wait.",
    )
    # The Standard Webhooks signing key (`whsec_` + base64). Kept as is, since it signs;
    # shown once when created (or rotated), never on a page, a message or a log line.
    secret = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Since when every attempt failed (null after a success); past WEBHOOK_DISABLE_AFTER
    # the endpoint is switched off and its brands' contacts are mailed.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    # The worker sending this endpoint's deliveries, until when (renewed at each delivery):
    # one sender per endpoint keeps its events in order. A dead worker's lease lapses.
    leased_until = models.DateTimeField(null=True, blank=True, editable=False)
    lease_holder = models.CharField(max_length=32, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "webhook endpoint"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=EndpointKind.values), name="webhook_endpoint_kind"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"


class WebhookDelivery(models.Model):
    """One event for one endpoint: planned with the event, tried until a 2xx answers
    (or the endpoint is switched off for failing too long), sent again on request."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # Not before this time (null once delivered). The endpoint's earliest undelivered
    # event goes first: the others wait behind it, whatever their own time says.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-event_id", "endpoint_id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="one_delivery_per_event"),
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values), name="webhook_delivery_status"
            ),
        ]
        indexes = [
            # An endpoint's undelivered events in event order: the sender's and the
            # dispatcher's query.
            models.Index(
                fields=["endpoint", "event"],
                condition=models.Q(status=DeliveryStatus.PENDING),
                name="delivery_pending_order",
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} to endpoint {self.endpoint_id} ({self.status})"
