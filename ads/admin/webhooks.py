"""Webhook and Slack endpoints (superusers only, like API keys): created with a signing
secret shown once, URLs checked against the outbound rules, switched on and off; and
their deliveries, read-only, with "send again"."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.forms import CheckboxSelectMultiple
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from ads.admin.base import ReadOnlyAdmin
from ads.admin.forms import StaleSafeFormMixin
from ads.models import (
    DeliveryStatus,
    EndpointKind,
    EventType,
    WebhookDelivery,
    WebhookEndpoint,
)
from ads.outbound import UrlRefused, check_url, origin
from ads.services import webhooks
from ads.slack import SLACK_DEFAULT_TYPES

TYPES_BOTH = "Event types: choose some types or tick 'All event types', not both."
TYPES_NEITHER = "Event types: choose the types this endpoint receives, or tick 'All event types'."
BRANDS_BOTH = "Brands: choose some brands or tick 'All brands', not both."
BRANDS_NEITHER = "Brands: choose the brands this endpoint receives events of, or tick 'All brands'."


class WebhookEndpointForm(StaleSafeFormMixin, forms.ModelForm[WebhookEndpoint]):
    url = forms.URLField(
        label="URL",
        max_length=2000,
        assume_scheme="https",
        help_text=WebhookEndpoint._meta.get_field("url").help_text,
    )
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        required=False,
        widget=CheckboxSelectMultiple,
        help_text="Left empty on a new endpoint: every type for a webhook; pauses, resumes "
        "and budget alerts for Slack.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = (
            "name",
            "kind",
            "url",
            "all_types",
            "event_types",
            "all_brands",
            "brands",
            "is_enabled",
        )

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        if self.instance.pk is not None and "url" not in self.changed_data:
            return url  # unchanged; checked again at every delivery anyway
        try:
            check_url(url)
        except UrlRefused as refused:
            raise forms.ValidationError(f"The URL {refused}.") from None
        return url

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        chosen, every = data.get("event_types"), data.get("all_types")
        if every and chosen:
            self.add_error("event_types", TYPES_BOTH)
        elif not every and not chosen:
            if self.instance.pk is not None:
                self.add_error("event_types", TYPES_NEITHER)
            elif data.get("kind") == EndpointKind.SLACK:
                data["event_types"] = [str(t) for t in SLACK_DEFAULT_TYPES]
            else:
                data["all_types"] = True
        brands = data.get("brands")
        if data.get("all_brands") and brands:
            self.add_error("brands", BRANDS_BOTH)
        if not data.get("all_brands") and not brands:
            self.add_error("brands", BRANDS_NEITHER)
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin[WebhookEndpoint]):
    """Receivers of events. The signing secret is shown once, on the page answering the
    creation (or a rotation); the list shows each URL's scheme and host only, since
    the rest often holds a token (it always does for Slack)."""

    form = WebhookEndpointForm
    list_display = (
        "name",
        "kind",
        "where",
        "types",
        "brand_scope",
        "is_enabled",
        "undelivered",
        "failing_since",
        "disabled_at",
    )
    list_filter = ("kind", "is_enabled")
    search_fields = ("name",)
    filter_horizontal = ("brands",)
    readonly_fields = ("created_at", "failing_since", "disabled_at", "disabled_reason")
    actions = ("switch_on", "switch_off", "rotate_secret")

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        # Its deliveries are the endpoint's own history (read-only, so Django would ask
        # for a delete right no one has): they go with it.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(WebhookDelivery._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        pending = Q(deliveries__status=DeliveryStatus.PENDING)
        return (
            super()
            .get_queryset(request)
            .annotate(pending=Count("deliveries", filter=pending))
            .prefetch_related("brands")
        )

    @admin.display(description="sends to")
    def where(self, obj: WebhookEndpoint) -> str:
        return origin(obj.url)

    @admin.display(description="event types")
    def types(self, obj: WebhookEndpoint) -> str:
        if obj.all_types:
            return "all"
        labels = dict(EventType.choices)
        return ", ".join(str(labels.get(t, t)) for t in obj.event_types) or "none"

    @admin.display(description="brands")
    def brand_scope(self, obj: WebhookEndpoint) -> str:
        if obj.all_brands:
            return "all brands"
        return ", ".join(b.name for b in obj.brands.all()) or "none (its brands were deleted)"

    @admin.display(description="undelivered", ordering="pending")
    def undelivered(self, obj: WebhookEndpoint) -> int:
        return int(getattr(obj, "pending", 0))

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        changed = list(form.changed_data) if change else None
        secret = webhooks.save_endpoint(obj, changed_fields=changed, at=timezone.now())
        # Kept on the request only, for the page that shows it once: never in a message
        # (whose storage may be a cookie), a session or a log.
        request.new_webhook_secret = secret  # type: ignore[attr-defined]  # per-request

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # A stale page must not write back brands a colleague changed since it was opened.
        if not change or "brands" in form.changed_data:
            form.save_m2m()

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, "new_webhook_secret", None)
        if secret is None or obj.kind == EndpointKind.SLACK:  # Slack checks no signature
            return super().response_add(request, obj, post_url_continue)
        return self.secret_page(request, obj, secret, "Copy the new signing secret")

    def secret_page(
        self, request: HttpRequest, obj: WebhookEndpoint, secret: str, title: str
    ) -> TemplateResponse:
        response = TemplateResponse(
            request,
            "ads/admin/webhook_secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "secret": secret,
                "endpoint": obj,
                "title": title,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Switch on selected endpoints (undelivered events go out now)")
    def switch_on(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        count = webhooks.set_endpoints_enabled(ids, enabled=True, at=timezone.now())
        self.message_user(request, f"{count} endpoint(s) switched on.", messages.SUCCESS)

    @admin.action(description="Switch off selected endpoints")
    def switch_off(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        count = webhooks.set_endpoints_enabled(ids, enabled=False, at=timezone.now())
        self.message_user(
            request,
            f"{count} endpoint(s) switched off. Their undelivered events wait until they are "
            "switched on again.",
            messages.SUCCESS,
        )

    @admin.action(description="Rotate the signing secret of the selected endpoint")
    def rotate_secret(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> TemplateResponse | None:
        chosen = list(queryset[:2])
        if len(chosen) != 1:
            self.message_user(request, "Choose one endpoint to rotate its secret.", messages.ERROR)
            return None
        endpoint = chosen[0]
        secret = webhooks.rotate_secret(endpoint)
        return self.secret_page(request, endpoint, secret, "Copy the new signing secret")


class DeliveryStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("waiting", "Waiting (not tried yet)"),
            ("failing", "Failing (tried, not delivered)"),
            ("delivered", "Delivered"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        pending = queryset.filter(status=DeliveryStatus.PENDING)
        if self.value() == "waiting":
            return pending.filter(attempts=0)
        if self.value() == "failing":
            return pending.filter(attempts__gt=0)
        if self.value() == "delivered":
            return queryset.filter(status=DeliveryStatus.DELIVERED)
        return queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Each event's delivery to each endpoint: tries, the last answer, the next try.
    Read-only; "send again" puts chosen deliveries back in line, due now."""

    list_display = (
        "event_ref",
        "endpoint",
        "event_type",
        "stream",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_try",
        "delivered_at",
    )
    list_filter = ("endpoint", "status", DeliveryStateFilter)
    list_select_related = ("endpoint", "event")
    search_fields = ("event__event_id",)
    actions = ("send_again",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        # An undelivered event waits behind its endpoint's earliest one.
        head = (
            WebhookDelivery.objects.filter(
                endpoint=OuterRef("endpoint"), status=DeliveryStatus.PENDING
            )
            .order_by("event_id")
            .values("next_attempt_at")[:1]
        )
        deliveries: QuerySet[WebhookDelivery] = super().get_queryset(request)
        return deliveries.annotate(head_next=Subquery(head))

    @admin.display(description="event", ordering="event_id")
    def event_ref(self, obj: WebhookDelivery) -> str:
        return obj.event.event_id

    @admin.display(description="type", ordering="event__type")
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.type

    @admin.display(description="stream and sequence")
    def stream(self, obj: WebhookDelivery) -> str:
        return f"{obj.event.stream} #{obj.event.sequence}"

    @admin.display(description="next try", ordering="next_attempt_at")
    def next_try(self, obj: WebhookDelivery) -> str:
        if obj.status != DeliveryStatus.PENDING or obj.next_attempt_at is None:
            return "-"
        if not obj.endpoint.is_enabled:
            return "when the endpoint is switched on"
        head = getattr(obj, "head_next", None)
        due = max(obj.next_attempt_at, head) if head is not None else obj.next_attempt_at
        return f"{timezone.localtime(due):%Y-%m-%d %H:%M:%S %Z}"

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    @admin.action(description="Send selected deliveries again", permissions=["resend"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        count = webhooks.send_again(ids, at=timezone.now())
        off = sorted(
            set(
                queryset.filter(endpoint__is_enabled=False).values_list("endpoint__name", flat=True)
            )
        )
        text = f"{count} delivery(ies) due again now, sent in event order."
        if off:
            text += f" Switched off, so waiting until switched on: {', '.join(off)}."
        self.message_user(request, text, messages.SUCCESS)
