"""Brands: budgets against spend, with their campaigns inline."""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html

from ads import services
from ads.admin.base import ArchivableAdmin, ArchivedFilter, lock_brand_for_post, warn_about_budgets
from ads.admin.campaigns import CampaignForm
from ads.admin.forms import StaleSafeFormMixin
from ads.admin.widgets import MoneyInput, TimeZoneInput, show_in_currency
from ads.models import Brand, Campaign, brand_zones
from ads.money import active_currencies, currency_name, format_money
from ads.rules import reasons_label
from ads.selectors import Standing, standing, with_campaign_counts

CURRENCY_REFUSED = "The currency {reason}"


def fixed_currency(brand: Brand) -> str | None:
    """Why this saved brand's currency can no longer change (it has spend), or None."""
    return services.currency_change_error(brand.pk, brand.currency, "another currency")


class BrandForm(StaleSafeFormMixin, forms.ModelForm[Brand]):
    """A brand's settings. Its currency is fixed once it has spend: the select is then
    disabled, with the reason as its help, and a change posted anyway is refused."""

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
        widgets = {
            "timezone": TimeZoneInput(),
            "daily_budget": MoneyInput(),
            "monthly_budget": MoneyInput(),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency_fixed = fixed_currency(self.instance) if self.instance.pk else None
        if (field := self.fields.get("currency")) is not None:
            field.required = False  # left out of a POST: see clean_currency
            if self.currency_fixed:
                field.disabled = True
                field.help_text = CURRENCY_REFUSED.format(reason=self.currency_fixed)
        if self.currency_fixed:
            for name in ("daily_budget", "monthly_budget"):
                show_in_currency(self.fields.get(name), self.instance.currency)

    def clean_currency(self) -> str:
        currency: str = self.cleaned_data["currency"]
        field, posted = self.fields["currency"], self.data.get(self.add_prefix("currency"))
        if not currency:
            if posted is not None:  # sent empty
                raise ValidationError(field.error_messages["required"], code="required")
            # Left out (a script's POST; a browser always sends the select): the brand
            # keeps its currency, as Django keeps an omitted field's default.
            return self.instance.currency
        # A disabled field ignores what is posted: a change posted anyway (a page opened
        # before the first spend, a forged form) is refused, not silently dropped. The
        # brand row is locked (lock_brand_for_post), so no spend slips in before the save.
        wanted = posted if field.disabled else currency
        if field.disabled and posted is not None and posted != self.instance.currency:
            # What a forged post sends is checked as the select would have checked it.
            if not posted:
                raise ValidationError(field.error_messages["required"], code="required")
            if posted not in active_currencies():
                raise ValidationError(
                    field.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": posted},
                )
        if wanted and self.instance.pk:
            reason = services.currency_change_error(
                self.instance.pk, self.instance.currency, str(wanted)
            )
            if reason:
                raise ValidationError(CURRENCY_REFUSED.format(reason=reason))
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
        # The rows' budgets are in the brand's currency once it is fixed (before, the
        # currency select on this page may still change it). A fresh form class per call.
        if obj is not None and fixed_currency(obj):
            show_in_currency(formset.form.base_fields.get("daily_budget"), obj.currency)
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
        "name_and_currency",
        "local_time",
        "is_active",
        "today",
        "this_month",
        "campaign_counts",
    )
    # The currencies and zones brands use, not every one there is.
    list_filter = (
        ArchivedFilter,
        "is_active",
        ("currency", admin.AllValuesFieldListFilter),
        "timezone",
    )
    search_fields = ("name",)
    readonly_fields = (
        "daily_counter",
        "monthly_counter",
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
                    "daily_counter",
                    "monthly_counter",
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

    @admin.display(description="name", ordering="name")
    def name_and_currency(self, obj: Brand) -> str:
        # The code under the name: a column of its own would push the list past the width
        # of a laptop screen.
        return format_html(
            '{}<abbr class="money-currency brand-currency" title="{}">{}</abbr>',
            obj.name,
            currency_name(obj.currency),
            obj.currency,
        )

    @admin.display(description="current daily spend")
    def daily_counter(self, obj: Brand) -> str:
        return format_money(obj.current_daily_spend, obj.currency)

    @admin.display(description="current monthly spend")
    def monthly_counter(self, obj: Brand) -> str:
        return format_money(obj.current_monthly_spend, obj.currency)

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
