"""The spend ledger: read-only, and exported as CSV with the list's filters."""

import csv
from datetime import datetime
from itertools import chain

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.urls import URLPattern, path, reverse

from ads.admin.base import ReadOnlyAdmin
from ads.models import SpendEvent
from ads.money import format_money


class _Echo:
    """A file-like object for csv.writer that hands each line back instead of storing it."""

    def write(self, line: str) -> str:
        return line


def _csv_text(value: object) -> object:
    # Cells starting with = + - @ are formulas to spreadsheet programs.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value.isoformat() if isinstance(value, datetime) else value


@admin.register(SpendEvent)
class SpendEventAdmin(ReadOnlyAdmin):
    list_display = (
        "occurred_at",
        "recorded_at",
        "brand",
        "campaign",
        "amount_text",
        "source",
        "idempotency_key",
    )
    fields = list_display
    readonly_fields = list_display
    list_filter = (
        "source",
        ("brand", admin.RelatedOnlyFieldListFilter),
        ("campaign", admin.RelatedOnlyFieldListFilter),
    )
    change_list_template = "ads/admin/spendevent_change_list.html"
    # The amount stays a plain decimal (a spreadsheet sums it), with the brand's
    # currency in the column after it: filter by currency before adding amounts up.
    csv_columns = (
        "id",
        "occurred_at",
        "recorded_at",
        "brand_id",
        "brand__name",
        "campaign_id",
        "campaign__name",
        "amount",
        "brand__currency",
        "source",
        "idempotency_key",
    )
    csv_headers = {"brand__currency": "currency"}

    @admin.display(description="amount", ordering="amount")
    def amount_text(self, obj: SpendEvent) -> str:
        return format_money(obj.amount, obj.brand.currency)

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
            [writer.writerow(self.csv_headers.get(column, column) for column in self.csv_columns)],
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
