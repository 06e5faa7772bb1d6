import csv
from datetime import datetime
from decimal import Decimal
from itertools import chain
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db.models import Count, Model, QuerySet
from django.forms import BaseInlineFormSet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from ads import services
from ads.api_keys import issue_key
from ads.dashboard import Standing, pause_details, standing, when, with_campaign_counts
from ads.admin.forms import StaleSafeFormMixin
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
    brand_zones,
)
from ads.money import format_money
from ads.rules import (
    WEEKDAY_NAMES,
    budget_warnings,
    left_or_over,
    next_schedule_change,
    reasons_label,
    schedule_allows,
    schedule_summary,
    transition_label,
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
        text += f"; {'closes' if allowed else 'opens'} {when(change, zone)}"
    return text


def spend_of_budget(spend: Decimal, budget: Decimal) -> str:
    if spend > budget:
        share = left_or_over(spend, budget)
    else:
        share = "exhausted" if spend >= budget else f"{spend / budget:.0%}"
    return f"{format_money(spend)} / {format_money(budget)} ({share})"


class TimeZoneInput(forms.TextInput):
    """A text box with the IANA zones as a searchable list: the browser suggests the
    zones containing what has been typed ("Berlin" finds Europe/Berlin)."""

    template_name = "ads/admin/timezone_input.html"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"list": "iana-zones", "autocomplete": "off", **(attrs or {})})

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["zones"] = sorted(brand_zones())
        return context


QUARTER_HOURS = [f"{minutes // 60:02d}:{minutes % 60:02d}" for minutes in range(0, 24 * 60, 15)]


class QuarterHourSelect(forms.Select):
    """24-hour times on the 15-minute grid, whatever the browser's locale (a time input
    shows AM/PM in an English browser)."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, choices=[(t, t) for t in QUARTER_HOURS])

    def format_value(self, value: Any) -> list[str]:
        if hasattr(value, "strftime"):
            value = value.strftime("%H:%M") if not value.second else value.isoformat()
        shown = super().format_value(value)
        # An off-grid time already stored stays visible (and is refused on save).
        for extra in shown:
            if extra and extra not in QUARTER_HOURS:
                self.choices = [*self.choices, (extra, extra)]
        return shown


def lock_brand_for_post(request: HttpRequest, brand_id: int | None) -> None:
    """On a POST, lock the brand row for the rest of the admin's transaction (the admin
    runs each change view in one), so the page's values are compared with, and saved
    over, a brand no one else can change meanwhile."""
    if request.method == "POST" and brand_id is not None:
        Brand.objects.select_for_update().filter(pk=brand_id).exists()


class ArchivedFilter(admin.SimpleListFilter):
    """Lists show what is current unless a person asks for the archive."""

    title = "archive"
    parameter_name = "archived"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Archived"), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Current",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "all":
            return queryset
        return queryset.filter(archived_at__isnull=self.value() != "yes")


class ArchivableAdmin(admin.ModelAdmin[Any]):
    """Brands and campaigns: one without spend can be deleted, with its own history;
    one with spend is archived instead, and can be restored."""

    delete_confirmation_template = "ads/admin/delete_confirmation.html"
    delete_selected_confirmation_template = "ads/admin/delete_selected_confirmation.html"

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        deleted, counts, perms_needed, _protected = super().get_deleted_objects(objs, request)
        # Status changes and alerts are the object's own history, deleted with it; the
        # ledger (protected) is what decides, in words rather than a list of rows.
        decided_here = {
            CampaignStatusChange._meta.verbose_name,
            BudgetAlert._meta.verbose_name,
            SpendEvent._meta.verbose_name,  # refused below, in words
        }
        perms_needed = {name for name in perms_needed if name not in decided_here}
        return deleted, counts, perms_needed, services.spend_blocking_delete(objs)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        services.delete_unspent([obj], actor=request.user.get_username(), at=timezone.now())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        services.delete_unspent(
            list(queryset), actor=request.user.get_username(), at=timezone.now()
        )

    @admin.action(description="Archive selected %(verbose_name_plural)s", permissions=["change"])
    def archive(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_archived(request, queryset, archived=True)

    @admin.action(description="Restore selected %(verbose_name_plural)s", permissions=["change"])
    def restore(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_archived(request, queryset, archived=False)

    def _set_archived(
        self, request: HttpRequest, queryset: QuerySet[Any], *, archived: bool
    ) -> None:
        objects = list(queryset)
        services.set_archived(
            objects, archived=archived, actor=request.user.get_username(), at=timezone.now()
        )
        if archived:
            text = (
                f"{len(objects)} archived and switched off. Their spend stays in the ledger; "
                "see them with the 'Archived' filter, and restore them from there."
            )
        else:
            text = f"{len(objects)} restored, switched off: turn them on when they should run."
        self.message_user(request, text, messages.SUCCESS)


def warn_about_budgets(admin_: admin.ModelAdmin[Any], request: HttpRequest, brand: Brand) -> None:
    """After a save: budgets that are allowed but probably a mistake, and what binds."""
    brand = Brand.objects.get(pk=brand.pk)
    campaigns = brand.campaigns.filter(archived_at__isnull=True).values_list("name", "daily_budget")
    for warning in budget_warnings(
        daily=brand.daily_budget,
        monthly=brand.monthly_budget,
        campaigns=[(name, budget) for name, budget in campaigns],
        format_amount=format_money,
    ):
        admin_.message_user(request, warning, messages.WARNING)


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


class BrandForm(StaleSafeFormMixin, forms.ModelForm[Brand]):
    class Meta:
        model = Brand
        fields = (
            "name",
            "timezone",
            "is_active",
            "contact_email",
            "daily_budget",
            "monthly_budget",
        )
        widgets = {"timezone": TimeZoneInput()}


class CampaignForm(StaleSafeFormMixin, forms.ModelForm[Campaign]):
    class Meta:
        model = Campaign
        fields = ("brand", "name", "is_enabled", "daily_budget", "schedule")


class CampaignInline(admin.TabularInline[Campaign, Brand]):
    model = Campaign
    form = CampaignForm
    fields = (
        "name",
        "is_enabled",
        "daily_budget",
        "schedule",
        "is_active",
        "reasons",
        "spend_today",
    )
    readonly_fields = ("is_active", "reasons", "spend_today")
    extra = 0
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return super().get_queryset(request).filter(archived_at__isnull=True)

    def get_formset(self, request: HttpRequest, obj: Brand | None = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.hand_clean_DELETE = refuse_deleting_spend  # type: ignore[attr-defined]  # Django's inline form defines it
        return formset

    @admin.display(description="pause reasons")
    def reasons(self, obj: Campaign) -> str:
        return reasons_label(obj.pause_reasons)

    @admin.display(description="spend today")
    def spend_today(self, obj: Campaign) -> str:
        if not obj.pk or obj.brand.timezone not in brand_zones():
            return "-"  # a new row, or the page is shown again with a bad time zone
        return format_money(obj.spend_today(timezone.now()))


def refuse_deleting_spend(form: forms.ModelForm[Campaign]) -> None:
    """For a campaign row ticked for deletion: Django's own check lists every protected
    ledger row; say instead, in words, why a campaign with spend stays."""
    if form.cleaned_data.get("DELETE") and form.instance.pk:
        reasons = services.spend_blocking_delete([form.instance])
        if reasons:
            raise ValidationError(reasons)


@admin.register(Brand)
class BrandAdmin(ArchivableAdmin):
    form = BrandForm
    list_display = (
        "name",
        "local_time",
        "is_active",
        "today",
        "this_month",
        "campaign_counts",
    )
    list_filter = (ArchivedFilter, "is_active", "timezone")
    search_fields = ("name",)
    readonly_fields = (
        "current_daily_spend",
        "current_monthly_spend",
        "counters_day",
        "counters_month",
        "archived_at",
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
    actions = ("archive", "restore")

    class Media:
        css = {"all": ["ads/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Brand]:
        return with_campaign_counts(super().get_queryset(request))

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Brand | None:
        if object_id.isdigit():
            lock_brand_for_post(request, int(object_id))
        return super().get_object(request, object_id, from_field)

    def get_fieldsets(self, request: HttpRequest, obj: Brand | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and obj.archived_at is not None:
            return [*fieldsets, ("Archive", {"fields": ("archived_at",)})]
        return fieldsets

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
            services.delete_unspent([deleted], actor=request.user.get_username(), at=timezone.now())
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

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        warn_about_budgets(self, request, form.instance)


@admin.register(Campaign)
class CampaignAdmin(ArchivableAdmin):
    form = CampaignForm
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
    list_filter = (ArchivedFilter, "is_enabled", "is_active", "brand", "schedule")
    search_fields = ("name", "brand__name")
    list_select_related = ("brand", "schedule")
    change_list_template = "ads/admin/campaign_change_list.html"
    readonly_fields = (
        "is_active",
        "why_not_running",
        "schedule_now",
        "today",
        "recent_changes",
        "archived_at",
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
        "today",
        "recent_changes",
        "archived_at",
        "created_at",
    )
    actions = ("enable", "disable", "archive", "restore")

    class Media:
        css = {"all": ["ads/admin.css"]}

    def get_readonly_fields(
        self, request: HttpRequest, obj: Campaign | None = None
    ) -> tuple[str, ...]:
        # The ledger rows of a campaign name its brand; moving it would split its spend.
        return (*self.readonly_fields, "brand") if obj else self.readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return super().get_queryset(request).prefetch_related("schedule__windows")

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Campaign | None:
        if object_id.isdigit():
            campaigns = Campaign.objects.filter(pk=int(object_id))
            brand_id = campaigns.values_list("brand_id", flat=True).first()
            lock_brand_for_post(request, brand_id)
        return super().get_object(request, object_id, from_field)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # When the list was shown: a bulk switch leaves alone what others switched since.
        context = {"page_opened_at": timezone.now().isoformat(), **(extra_context or {})}
        return super().changelist_view(request, context)

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
        spend = obj.spend_today(timezone.now())  # 0 after local midnight, before a reset
        if obj.daily_budget is None:
            return f"{format_money(spend)} (no own budget)"
        return spend_of_budget(spend, obj.daily_budget)

    @admin.display(description="why not running")
    def why_not_running(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        if obj.is_active:
            brand_today = standing(obj.brand, timezone.now())[0]
            left = f"brand {brand_today.left_text} today"
            if obj.daily_budget is not None:
                own = left_or_over(obj.spend_today(timezone.now()), obj.daily_budget)
                left += f", own budget {own}"
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
            ((f"{c.changed_at:%Y-%m-%d %H:%M} UTC", change_label(c), c.actor) for c in changes),
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
        warn_about_budgets(self, request, obj.brand)

    @admin.action(description="Enable selected campaigns", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._switch(request, queryset, enabled=True)

    @admin.action(description="Disable selected campaigns", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._switch(request, queryset, enabled=False)

    def _switch(self, request: HttpRequest, queryset: QuerySet[Campaign], *, enabled: bool) -> None:
        opened = parse_datetime(str(request.POST.get("page_opened_at", "")))
        result = services.set_campaigns_enabled(
            list(queryset.values_list("pk", flat=True)),
            enabled=enabled,
            actor=request.user.get_username(),
            at=timezone.now(),
            page_opened_at=opened if opened and timezone.is_aware(opened) else None,
        )
        verb = "enabled" if enabled else "disabled"
        self.message_user(
            request,
            f"{result.switched} campaign(s) {verb}; {len(result.refresh.changes)} changed state.",
            messages.SUCCESS,
        )
        for conflict in result.conflicts:
            self.message_user(request, conflict, messages.WARNING)


def change_label(change: CampaignStatusChange) -> str:
    return transition_label(
        change.old_is_active,
        change.old_pause_reasons,
        change.new_is_active,
        change.new_pause_reasons,
    )


class ScheduleWindowForm(StaleSafeFormMixin, forms.ModelForm[ScheduleWindow]):
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
        widgets = {"start": QuarterHourSelect(), "end": QuarterHourSelect()}

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


class ScheduleForm(StaleSafeFormMixin, forms.ModelForm[Schedule]):
    class Meta:
        model = Schedule
        fields = ("name",)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin[Schedule]):
    form = ScheduleForm
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
        save_changed_fields(obj, form, change)

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
    list_display = ("changed_at", "campaign", "brand", "change", "actor", "new_is_active")
    list_filter = (
        ("campaign__brand", admin.RelatedOnlyFieldListFilter),
        "actor",
        "new_is_active",
    )
    search_fields = ("campaign__name", "campaign__brand__name", "actor", "reason")
    list_select_related = ("campaign", "campaign__brand")
    date_hierarchy = "changed_at"
    fields = (
        "changed_at",
        "campaign",
        "brand",
        "change",
        "actor",
        "old_is_active",
        "new_is_active",
        "reason",
    )
    readonly_fields = fields

    @admin.display(description="brand", ordering="campaign__brand__name")
    def brand(self, obj: CampaignStatusChange) -> str:
        return str(obj.campaign.brand.name)

    @admin.display(description="change")
    def change(self, obj: CampaignStatusChange) -> str:
        return change_label(obj)


def save_changed_fields(obj: Model, form: Any, change: bool) -> None:
    """Save a new object whole, an existing one only in the fields changed on the page."""
    if not change:
        obj.save()
        return
    concrete = {f.name for f in obj._meta.concrete_fields}
    obj.save(update_fields=[name for name in form.changed_data if name in concrete])


class ApiKeyForm(StaleSafeFormMixin, forms.ModelForm[ApiKey]):
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
        if not change:
            # Kept on the request only, for the page that shows it once: never in a
            # message (whose storage may be a cookie), a session or a log.
            request.new_api_key = issue_key(obj)  # type: ignore[attr-defined]  # per-request
        save_changed_fields(obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Django saves every many-to-many field; a stale page must not write back brands
        # a colleague changed since it was opened.
        if not change or "brands" in form.changed_data:
            form.save_m2m()

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        key = getattr(request, "new_api_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "ads/admin/apikey_created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "key": key,
                "api_key": obj,
                "title": "Copy the new API key",
            },
        )
        response["Cache-Control"] = "no-store"
        return response

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
