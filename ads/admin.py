import csv
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ads import services
from ads.api_keys import issue_key
from ads.dashboard import Standing, pause_details, standing, with_campaign_counts
from ads.models import (
    WEEKDAYS_EMPTY,
    ApiKey,
    Brand,
    BudgetAlert,
    Campaign,
    CampaignStatusChange,
    Schedule,
    ScheduleWindow,
    SettingChange,
    SpendEvent,
)
from ads.money import format_money
from ads.rules import (
    WEEKDAY_NAMES,
    next_schedule_change,
    reasons_label,
    schedule_allows,
    schedule_summary,
    weekday_mask,
    weekdays_of,
)


def schedule_status(campaign: Campaign, at: datetime) -> str:
    """'Yes (Mon–Fri 09:00–17:00); closes Fri 27 Nov 17:00 America/New_York (22:00 UTC)'."""
    if campaign.schedule is None:
        return "Yes (no schedule: any time)"
    windows = campaign.schedule.rule_windows()
    zone = campaign.brand.zone
    allowed = schedule_allows(windows, at, zone)
    text = f"{'Yes' if allowed else 'No'} ({schedule_summary(windows)})"
    change = next_schedule_change(windows, at, zone)
    if change is not None:
        local = change.astimezone(zone)
        text += (
            f"; {'closes' if allowed else 'opens'} {local:%a %d %b %H:%M} {zone.key}"
            f" ({change.astimezone(UTC):%a %H:%M} UTC)"
        )
    return text


def spend_of_budget(spend: Decimal, budget: Decimal) -> str:
    share = "exhausted" if spend >= budget else f"{spend / budget:.0%}"
    return f"{format_money(spend)} / {format_money(budget)} ({share})"


class _Echo:
    """A file-like object for csv.writer that hands each line back instead of storing it."""

    def write(self, line: str) -> str:
        return line


def _csv_text(value: object) -> object:
    # Cells starting with = + - @ are formulas to spreadsheet programs.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value.isoformat() if isinstance(value, datetime) else value


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """Ledger and audit rows: visible to staff with view permission, editable by nobody,
    superusers included."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CampaignInline(admin.TabularInline[Campaign, Brand]):
    model = Campaign
    fields = (
        "name",
        "is_enabled",
        "daily_budget",
        "schedule",
        "is_active",
        "reasons",
        "daily_spend",
    )
    readonly_fields = ("is_active", "reasons", "daily_spend")
    extra = 0
    show_change_link = True

    @admin.display(description="pause reasons")
    def reasons(self, obj: Campaign) -> str:
        return reasons_label(obj.pause_reasons)


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin[Brand]):
    list_display = (
        "name",
        "local_time",
        "is_active",
        "today",
        "this_month",
        "campaign_counts",
    )
    list_filter = ("is_active", "timezone")
    search_fields = ("name",)
    readonly_fields = (
        "current_daily_spend",
        "current_monthly_spend",
        "counters_day",
        "counters_month",
    )
    fieldsets = (
        (None, {"fields": ("name", "timezone", "is_active", "contact_email")}),
        ("Budgets", {"fields": ("daily_budget", "monthly_budget")}),
        (
            "Spend (kept by the system from the ledger)",
            {
                "fields": (
                    "current_daily_spend",
                    "current_monthly_spend",
                    "counters_day",
                    "counters_month",
                )
            },
        ),
    )
    inlines = (CampaignInline,)

    class Media:
        css = {"all": ["ads/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Brand]:
        return with_campaign_counts(super().get_queryset(request))

    @staticmethod
    def standing(obj: Brand) -> tuple[Standing, Standing]:
        """Computed once per row and request."""
        if not hasattr(obj, "_standing"):
            obj._standing = standing(obj, timezone.now())  # type: ignore[attr-defined]  # per-row cache
        return obj._standing  # type: ignore[attr-defined, no-any-return]  # set above

    @admin.display(description="local time")
    def local_time(self, obj: Brand) -> str:
        return f"{timezone.now().astimezone(obj.zone):%a %H:%M} {obj.timezone}"

    @admin.display(description="today")
    def today(self, obj: Brand) -> str:
        return render_to_string("ads/admin/bar.html", {"s": self.standing(obj)[0]})

    @admin.display(description="this month")
    def this_month(self, obj: Brand) -> str:
        return render_to_string("ads/admin/bar.html", {"s": self.standing(obj)[1]})

    @admin.display(description="campaigns", ordering="-running")
    def campaign_counts(self, obj: Brand) -> str:
        return f"{getattr(obj, 'running', 0)} running, {getattr(obj, 'paused', 0)} paused"

    def save_model(self, request: HttpRequest, obj: Brand, form: Any, change: bool) -> None:
        services.save_brand(
            obj,
            changed_fields=form.changed_data,
            actor=request.user.get_username(),
            at=timezone.now(),
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        campaigns = formset.save(commit=False)
        for deleted in formset.deleted_objects:
            deleted.delete()
        # Keyed by identity: new campaigns have no primary key yet, so are unhashable.
        changed = {id(f.instance): f.changed_data for f in formset.forms}
        for campaign in campaigns:
            services.save_campaign(
                campaign,
                changed_fields=changed.get(id(campaign), ()),
                actor=request.user.get_username(),
                at=timezone.now(),
            )
        formset.save_m2m()


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin[Campaign]):
    list_display = (
        "name",
        "brand",
        "is_enabled",
        "is_active",
        "reasons",
        "today",
        "schedule",
        "schedule_now",
    )
    list_filter = ("is_enabled", "is_active", "brand", "schedule")
    search_fields = ("name", "brand__name")
    list_select_related = ("brand", "schedule")
    readonly_fields = (
        "is_active",
        "why_not_running",
        "schedule_now",
        "daily_spend",
        "recent_changes",
        "created_at",
    )
    fields = (
        "brand",
        "name",
        "is_enabled",
        "daily_budget",
        "schedule",
        "schedule_now",
        "is_active",
        "why_not_running",
        "daily_spend",
        "recent_changes",
        "created_at",
    )
    actions = ("enable", "disable")

    class Media:
        css = {"all": ["ads/admin.css"]}

    def get_readonly_fields(
        self, request: HttpRequest, obj: Campaign | None = None
    ) -> tuple[str, ...]:
        # The ledger rows of a campaign name its brand; moving it would split its spend.
        return (*self.readonly_fields, "brand") if obj else self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return super().get_queryset(request).prefetch_related("schedule__windows")

    @admin.display(description="pause reasons")
    def reasons(self, obj: Campaign) -> str:
        return reasons_label(obj.pause_reasons)

    @admin.display(description="schedule now")
    def schedule_now(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        return schedule_status(obj, timezone.now())

    @admin.display(description="spend today / own budget")
    def today(self, obj: Campaign) -> str:
        if obj.daily_budget is None:
            return f"{format_money(obj.daily_spend)} (no own budget)"
        return spend_of_budget(obj.daily_spend, obj.daily_budget)

    @admin.display(description="why not running")
    def why_not_running(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        if obj.is_active:
            left = f"brand {format_money(obj.brand.daily_left)} left today"
            if obj.daily_left is not None:
                left += f", own budget {format_money(obj.daily_left)} left"
            return f"It is running ({left})."
        return format_html(
            '<ul class="why-not-running">{}</ul>',
            format_html_join(
                "", "<li><strong>{}</strong>{}</li>",
                ((label, f": {detail}" if detail else "")
                 for label, detail in pause_details(obj, timezone.now())),
            ),
        )  # fmt: skip

    @admin.display(description="recent status changes")
    def recent_changes(self, obj: Campaign) -> str:
        changes = obj.status_changes.all()[:10] if obj.pk else []
        if not changes:
            return "None yet."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((f"{c.changed_at:%Y-%m-%d %H:%M} UTC", c.reason, c.actor) for c in changes),
        )  # fmt: skip
        return format_html(
            '<table class="status-changes"><thead><tr><th>When</th><th>Change</th>'
            "<th>By</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        services.save_campaign(
            obj,
            changed_fields=form.changed_data,
            actor=request.user.get_username(),
            at=timezone.now(),
        )

    @admin.action(description="Enable selected campaigns", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._switch(request, queryset, enabled=True)

    @admin.action(description="Disable selected campaigns", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._switch(request, queryset, enabled=False)

    def _switch(self, request: HttpRequest, queryset: QuerySet[Campaign], *, enabled: bool) -> None:
        result = services.set_campaigns_enabled(
            list(queryset.values_list("pk", flat=True)),
            enabled=enabled,
            actor=request.user.get_username(),
            at=timezone.now(),
        )
        verb = "enabled" if enabled else "disabled"
        self.message_user(
            request,
            f"{queryset.count()} campaign(s) {verb}; {len(result.changes)} changed state.",
            messages.SUCCESS,
        )


class ScheduleWindowForm(forms.ModelForm[ScheduleWindow]):
    days = forms.TypedMultipleChoiceField(
        label="Weekdays",
        choices=list(enumerate(WEEKDAY_NAMES)),
        coerce=int,
        initial=list(range(7)),
        widget=forms.CheckboxSelectMultiple(attrs={"class": "weekdays"}),
        error_messages={"required": WEEKDAYS_EMPTY},
    )

    class Meta:
        model = ScheduleWindow
        fields = ("days", "start", "end")
        widgets = {
            "start": forms.TimeInput(format="%H:%M", attrs={"type": "time", "step": 900}),
            "end": forms.TimeInput(format="%H:%M", attrs={"type": "time", "step": 900}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["days"] = weekdays_of(self.instance.weekdays)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.instance.weekdays = weekday_mask(cleaned.get("days", []))
        return cleaned


class ScheduleWindowFormSet(
    BaseInlineFormSet[ScheduleWindow, Schedule, forms.ModelForm[ScheduleWindow]]
):
    def clean(self) -> None:
        """Name each bad window and its reason above the table, not only in its row."""
        super().clean()
        problems = []
        for number, form in enumerate(self.forms, start=1):
            for field, messages_ in form.errors.items():
                label = "" if field == NON_FIELD_ERRORS else f"{form.fields[field].label}: "
                problems.append(f"Window {number}: {label}{' '.join(str(m) for m in messages_)}")
        if problems:
            raise ValidationError(problems)


class ScheduleWindowInline(admin.TabularInline[ScheduleWindow, Schedule]):
    model = ScheduleWindow
    form = ScheduleWindowForm
    formset = ScheduleWindowFormSet
    min_num = 1
    extra = 0
    verbose_name = "window"

    def get_formset(self, request: HttpRequest, obj: Schedule | None = None, **kwargs: Any) -> Any:
        # min_num alone only shapes the form; a schedule must keep at least one window.
        return super().get_formset(request, obj, validate_min=True, **kwargs)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin[Schedule]):
    list_display = ("name", "summary", "campaign_count")
    search_fields = ("name",)
    inlines = (ScheduleWindowInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return (
            super()
            .get_queryset(request)
            .annotate(n_campaigns=Count("campaigns"))
            .prefetch_related("windows")
        )

    @admin.display(description="windows (brand's local time)")
    def summary(self, obj: Schedule) -> str:
        return schedule_summary(obj.rule_windows())

    @admin.display(description="campaigns", ordering="n_campaigns")
    def campaign_count(self, obj: Schedule) -> int:
        return int(getattr(obj, "n_campaigns", 0))

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        # What the schedule was, for the audit row written once the windows are saved.
        old = Schedule.objects.filter(pk=obj.pk).first() if obj.pk else None
        form.old_schedule = old
        form.old_windows = schedule_summary(old.rule_windows()) if old else ""
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        services.schedule_saved(
            form.instance,
            old=form.old_schedule,
            old_windows=form.old_windows,
            actor=request.user.get_username(),
            at=timezone.now(),
        )


@admin.register(SpendEvent)
class SpendEventAdmin(ReadOnlyAdmin):
    list_display = (
        "occurred_at",
        "recorded_at",
        "brand",
        "campaign",
        "amount",
        "source",
        "idempotency_key",
    )
    list_filter = (
        "source",
        ("brand", admin.RelatedOnlyFieldListFilter),
        ("campaign", admin.RelatedOnlyFieldListFilter),
    )
    change_list_template = "ads/admin/spendevent_change_list.html"
    csv_columns = (
        "id",
        "occurred_at",
        "recorded_at",
        "brand_id",
        "brand__name",
        "campaign_id",
        "campaign__name",
        "amount",
        "source",
        "idempotency_key",
    )

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv),
            name="ads_spendevent_export",
        )
        return [export, *super().get_urls()]

    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse | HttpResponseRedirect:
        """The ledger rows the change list shows (same filters, search and dates), as
        CSV, streamed so a large export does not sit in memory."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            rows = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters:  # as the ledger page does with bad filters
            return HttpResponseRedirect(f"{reverse('admin:ads_spendevent_changelist')}?e=1")
        buffer = _Echo()
        writer = csv.writer(buffer)
        lines = chain(
            [writer.writerow(self.csv_columns)],
            (
                writer.writerow([_csv_text(value) for value in row])
                for row in rows.values_list(*self.csv_columns).iterator(chunk_size=2000)
            ),
        )
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="spend-ledger.csv"'
        return response

    search_fields = ("idempotency_key", "campaign__name", "brand__name")
    list_select_related = ("brand", "campaign")
    date_hierarchy = "occurred_at"


@admin.register(CampaignStatusChange)
class CampaignStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "campaign", "reason", "actor", "old_is_active", "new_is_active")
    list_filter = ("actor", "new_is_active")
    search_fields = ("campaign__name", "actor", "reason")
    list_select_related = ("campaign", "campaign__brand")
    date_hierarchy = "changed_at"


class ApiKeyForm(forms.ModelForm[ApiKey]):
    class Meta:
        model = ApiKey
        fields = ("name", "all_brands", "brands")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        chosen = data.get("brands")
        if data.get("all_brands") and chosen:
            raise forms.ValidationError(API_KEY_BOTH)
        if not data.get("all_brands") and not chosen:
            raise forms.ValidationError(API_KEY_NEITHER)
        return data


API_KEY_BOTH = "Brands: choose some brands or tick 'All brands', not both."
API_KEY_NEITHER = "Brands: choose the brands this key may use, or tick 'All brands'."


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    """Keys for the HTTP API: the key is shown once, when created; only its hash stays."""

    form = ApiKeyForm
    list_display = ("name", "prefix", "brand_scope", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix")
    filter_horizontal = ("brands",)
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    @admin.display(description="brands")
    def brand_scope(self, obj: ApiKey) -> str:
        if obj.all_brands:
            return "all brands"
        return ", ".join(b.name for b in obj.brands.all()) or "none (its brands were deleted)"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        key = None if change else issue_key(obj)
        super().save_model(request, obj, form, change)
        if key:
            self.message_user(
                request, f"Copy this key now; it is not shown again: {key}", messages.WARNING
            )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "brand",
        "budget_kind",
        "threshold",
        "period",
        "spend",
        "budget",
        "emailed_to",
    )
    list_filter = ("budget_kind", "threshold", ("brand", admin.RelatedOnlyFieldListFilter))
    search_fields = ("brand__name",)
    list_select_related = ("brand",)
    date_hierarchy = "created_at"


@admin.register(SettingChange)
class SettingChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "changed_at",
        "actor",
        "object_type",
        "object_repr",
        "field",
        "old_value",
        "new_value",
    )
    list_filter = ("object_type", "field", "actor")
    search_fields = ("object_repr", "actor")
    date_hierarchy = "changed_at"
