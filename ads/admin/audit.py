"""The audit: status changes, budget alerts and setting changes, read-only."""

from django.contrib import admin

from ads.admin.base import ReadOnlyAdmin
from ads.admin.presenters import change_label
from ads.models import BudgetAlert, CampaignStatusChange, SettingChange
from ads.money import format_money


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


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "brand",
        "budget_kind",
        "threshold",
        "period",
        "spend_text",
        "budget_text",
        "emailed_to",
    )
    fields = list_display
    readonly_fields = list_display
    list_filter = ("budget_kind", "threshold", ("brand", admin.RelatedOnlyFieldListFilter))
    search_fields = ("brand__name",)
    list_select_related = ("brand",)
    date_hierarchy = "created_at"

    @admin.display(description="spend", ordering="spend")
    def spend_text(self, obj: BudgetAlert) -> str:
        return format_money(obj.spend, obj.brand.currency)

    @admin.display(description="budget", ordering="budget")
    def budget_text(self, obj: BudgetAlert) -> str:
        return format_money(obj.budget, obj.brand.currency)


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
