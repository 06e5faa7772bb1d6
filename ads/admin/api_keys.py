"""Keys of the HTTP API: created (shown once), limited to brands, revoked."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from ads.admin.base import save_changed_fields
from ads.admin.forms import StaleSafeFormMixin
from ads.api_keys import issue_key
from ads.models import ApiKey


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
