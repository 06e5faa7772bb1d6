"""The event log, read-only: what the feed and the webhooks send, as people read it."""

import json

from django.contrib import admin
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ads.admin.base import ReadOnlyAdmin
from ads.models import Event


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "type", "brand", "campaign", "position", "actor")
    list_filter = ("type", ("brand", admin.RelatedOnlyFieldListFilter))
    # Exact: an id is pasted from a receiver's log, and the unique index finds it at once
    # where a substring search would read the whole log.
    search_fields = ("event_id__exact",)
    search_help_text = "An event id, such as evt_0f3c…, exactly as a receiver got it."
    list_select_related = ("brand", "campaign")
    date_hierarchy = "created_at"
    ordering = ("-pk",)  # newest first, by the primary key's index on a long log
    fields = (
        "event_id",
        "type",
        "created_at",
        "brand",
        "campaign",
        "position",
        "actor",
        "payload_text",
    )
    readonly_fields = fields

    @admin.display(description="stream#sequence", ordering="stream")
    def position(self, obj: Event) -> str:
        return f"{obj.stream}#{obj.sequence}"

    @admin.display(description="payload")
    def payload_text(self, obj: Event) -> SafeString:
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre class="event-payload">{}</pre>', text)
