"""What the model admins share: archiving instead of deleting what has spend, the
read-only admin of ledger and audit rows, the brand lock of a change page, saving only
the fields changed on the page, and the budget warnings after a save."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from ads import services
from ads.models import Brand, BudgetAlert, CampaignStatusChange, Event, WebhookDelivery
from ads.money import format_money
from ads.rules import budget_warnings


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
        # The ledger decides, in words, before Django's collector would walk every
        # protected ledger row of a brand with years of spend.
        refused = services.spend_blocking_delete(list(objs))
        if refused:
            return [], {}, set(), refused
        deleted, counts, perms_needed, _protected = super().get_deleted_objects(objs, request)
        # Status changes, alerts, events and their webhook deliveries are the object's own
        # history, deleted with it.
        own_history = {
            CampaignStatusChange._meta.verbose_name,
            BudgetAlert._meta.verbose_name,
            Event._meta.verbose_name,
            WebhookDelivery._meta.verbose_name,
        }
        return deleted, counts, {n for n in perms_needed if n not in own_history}, []

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
    campaigns = brand.campaigns.filter(archived_at__isnull=True).values_list(
        "name", "daily_budget", named=True
    )
    for warning in budget_warnings(
        daily=brand.daily_budget,
        monthly=brand.monthly_budget,
        campaigns=[(c.name, c.daily_budget) for c in campaigns],
        format_amount=lambda amount: format_money(amount, brand.currency),
    ):
        admin_.message_user(request, warning, messages.WARNING)


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """Ledger and audit rows: visible to staff with view permission, editable by nobody,
    superusers included."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def save_changed_fields(obj: Model, form: Any, change: bool) -> None:
    """Save a new object whole, an existing one only in the fields changed on the page."""
    if not change:
        obj.save()
        return
    concrete = {f.name for f in obj._meta.concrete_fields}
    obj.save(update_fields=[name for name in form.changed_data if name in concrete])
