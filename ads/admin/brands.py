"""Brands: budgets against spend, with their campaigns inline."""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone

from ads import services
from ads.admin.base import ArchivableAdmin, ArchivedFilter, lock_brand_for_post, warn_about_budgets
from ads.admin.campaigns import CampaignForm
from ads.admin.forms import StaleSafeFormMixin
from ads.admin.widgets import TimeZoneInput
from ads.models import Brand, Campaign, brand_zones
from ads.money import format_money
from ads.rules import reasons_label
from ads.selectors import Standing, standing, with_campaign_counts


class BrandForm(StaleSafeFormMixin, forms.ModelForm[Brand]):
    class Meta:
        model = Brand
        fields = (
            "name",
            "timezone",
            "is_active",
            "contact_email",
            "currency",
            "daily_budget",
            "monthly_budget",
        )
        widgets = {"timezone": TimeZoneInput()}

    def clean_currency(self) -> str:
        """A brand with spend keeps its currency: said on the field, before the save
        (which checks it again under the brand's lock)."""
        currency: str = self.cleaned_data["currency"]
        error = services.currency_change_error(self.instance.pk, self.instance.currency, currency)
        if error:
            raise ValidationError(error, code="currency_fixed")
        return currency


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
        return format_money(obj.spend_today(timezone.now()), obj.brand.currency)


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
        ("Budgets", {"fields": ("currency", "daily_budget", "monthly_budget")}),
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
