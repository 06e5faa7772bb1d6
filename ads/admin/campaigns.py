"""Campaigns: state, why one is not running, switching on and off in bulk."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from ads import services
from ads.admin.base import ArchivableAdmin, ArchivedFilter, lock_brand_for_post, warn_about_budgets
from ads.admin.forms import StaleSafeFormMixin
from ads.admin.presenters import change_label, pause_details, schedule_status
from ads.admin.widgets import MoneyInput, show_in_currency
from ads.models import Campaign
from ads.money import format_money
from ads.rules import left_or_over, reasons_label, spend_of_budget
from ads.selectors import standing


class CampaignForm(StaleSafeFormMixin, forms.ModelForm[Campaign]):
    class Meta:
        model = Campaign
        fields = ("brand", "name", "is_enabled", "daily_budget", "schedule")
        widgets = {"daily_budget": MoneyInput()}


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

    def get_form(
        self, request: HttpRequest, obj: Campaign | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None:  # its brand, so its currency, is fixed; a fresh class per call
            show_in_currency(form.base_fields.get("daily_budget"), obj.brand.currency)
        return form

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
            return f"{format_money(spend, obj.brand.currency)} (no own budget)"
        return spend_of_budget(spend, obj.daily_budget, obj.brand.currency)

    @admin.display(description="why not running")
    def why_not_running(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        if obj.is_active:
            brand_today = standing(obj.brand, timezone.now())[0]
            left = f"brand {brand_today.left_text} today"
            if obj.daily_budget is not None:
                own = left_or_over(
                    obj.spend_today(timezone.now()), obj.daily_budget, obj.brand.currency
                )
                left += f", own budget {own}"
            return f"It is running ({left})."
        items = (
            (label, f": {detail}" if detail else "")
            for label, detail in pause_details(obj, timezone.now())
        )
        return format_html(
            '<ul class="why-not-running">{}</ul>',
            format_html_join("", "<li><strong>{}</strong>{}</li>", items),
        )

    @admin.display(description="recent status changes")
    def recent_changes(self, obj: Campaign) -> str:
        changes = obj.status_changes.all()[:10] if obj.pk else []
        if not changes:
            return "None yet."
        cells = ((f"{c.changed_at:%Y-%m-%d %H:%M} UTC", change_label(c), c.actor) for c in changes)
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", cells)
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
