from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ads import services
from ads.models import (
    Brand,
    Campaign,
    CampaignStatusChange,
    Schedule,
    SettingChange,
    SpendEvent,
)
from ads.money import format_money
from ads.rules import PauseReason


def spend_of_budget(spend: Decimal, budget: Decimal) -> str:
    share = "exhausted" if spend >= budget else f"{spend / budget:.0%}"
    return f"{format_money(spend)} / {format_money(budget)} ({share})"


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
        return ", ".join(PauseReason(r).label for r in obj.pause_reasons) or "-"


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin[Brand]):
    list_display = (
        "name",
        "timezone",
        "is_active",
        "today",
        "this_month",
        "running_campaigns",
        "paused_campaigns",
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
        (None, {"fields": ("name", "timezone", "is_active")}),
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Brand]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                running=Count("campaigns", filter=Q(campaigns__is_active=True)),
                paused=Count("campaigns", filter=Q(campaigns__is_active=False)),
            )
        )

    @admin.display(description="spend today / budget")
    def today(self, obj: Brand) -> str:
        return spend_of_budget(obj.current_daily_spend, obj.daily_budget)

    @admin.display(description="spend this month / budget")
    def this_month(self, obj: Brand) -> str:
        return spend_of_budget(obj.current_monthly_spend, obj.monthly_budget)

    @admin.display(description="running", ordering="running")
    def running_campaigns(self, obj: Brand) -> int:
        return int(getattr(obj, "running", 0))

    @admin.display(description="paused", ordering="paused")
    def paused_campaigns(self, obj: Brand) -> int:
        return int(getattr(obj, "paused", 0))

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
    list_display = ("name", "brand", "is_enabled", "is_active", "reasons", "today", "schedule")
    list_filter = ("is_enabled", "is_active", "brand", "schedule")
    search_fields = ("name", "brand__name")
    list_select_related = ("brand", "schedule")
    readonly_fields = ("is_active", "why_not_running", "daily_spend", "created_at")
    fields = (
        "brand",
        "name",
        "is_enabled",
        "daily_budget",
        "schedule",
        "is_active",
        "why_not_running",
        "daily_spend",
        "created_at",
    )
    actions = ("enable", "disable")

    def get_readonly_fields(
        self, request: HttpRequest, obj: Campaign | None = None
    ) -> tuple[str, ...]:
        # The ledger rows of a campaign name its brand; moving it would split its spend.
        return (*self.readonly_fields, "brand") if obj else self.readonly_fields

    @admin.display(description="pause reasons")
    def reasons(self, obj: Campaign) -> str:
        return ", ".join(PauseReason(r).label for r in obj.pause_reasons) or "-"

    @admin.display(description="spend today / own budget")
    def today(self, obj: Campaign) -> str:
        if obj.daily_budget is None:
            return f"{format_money(obj.daily_spend)} (no own budget)"
        return spend_of_budget(obj.daily_spend, obj.daily_budget)

    @admin.display(description="why is this not running?")
    def why_not_running(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "-"
        if obj.is_active:
            return "It is running."
        brand = obj.brand
        details = {
            PauseReason.BRAND_DAILY_BUDGET: (
                f"spent {format_money(brand.current_daily_spend)} of "
                f"{format_money(brand.daily_budget)} today"
            ),
            PauseReason.BRAND_MONTHLY_BUDGET: (
                f"spent {format_money(brand.current_monthly_spend)} of "
                f"{format_money(brand.monthly_budget)} this month"
            ),
            PauseReason.CAMPAIGN_DAILY_BUDGET: (
                f"spent {format_money(obj.daily_spend)} of "
                f"{format_money(obj.daily_budget or Decimal(0))} today"
            ),
        }
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{}{}</li>",
                (
                    (PauseReason(r).label, f": {details[r]}" if r in details else "")
                    for r in obj.pause_reasons
                ),
            ),
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


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin[Schedule]):
    list_display = ("name", "campaign_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return super().get_queryset(request).annotate(n_campaigns=Count("campaigns"))

    @admin.display(description="campaigns", ordering="n_campaigns")
    def campaign_count(self, obj: Schedule) -> int:
        return int(getattr(obj, "n_campaigns", 0))


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
    list_filter = ("source", "brand")
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
