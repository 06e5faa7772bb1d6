"""GET /events: the pull feed of the key's brands' events, resumable from a cursor."""

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Query, Router, Status

from ads.api.auth import caller
from ads.api.errors import unknown_query
from ads.api.schemas import ErrorOut, EventPageOut, EventQuery
from ads.models import Event
from ads.selectors import FEED_START, FeedPosition, event_feed
from ads.validation import describe

router = Router()


def event_out(event: Event) -> dict[str, object]:
    return {
        "id": event.event_id,
        "type": event.type,
        "created_at": event.created_at,
        "brand_id": event.brand_id,
        "campaign_id": event.campaign_id,
        "stream": event.stream,
        "sequence": event.sequence,
        "payload": event.payload,
    }


@router.get(
    "/events",
    response={200: EventPageOut, 400: ErrorOut, 401: ErrorOut, 422: ErrorOut},
    summary="Read the event feed from a cursor",
)
def list_events(request: HttpRequest, query: Query[EventQuery]) -> Status[object]:
    """Every event of the key's brands (state changes, threshold alerts, settings
    changes), a page at a time, in an order that never changes behind a cursor.

    Start without `after`, then pass each answer's `next_cursor` as `after`. Store the
    cursor with what you did with the page: resuming from it after any downtime, you
    miss nothing and get nothing twice. An event appears in the feed once every
    transaction older than its own has finished (usually at once, at most the length
    of the longest transaction running), never out of order behind a cursor already
    given. `has_more` false means you are up to date: poll again later. Events of one
    stream (a campaign, or a brand's own) come in `sequence` order; de-duplicate by
    `id` when you also receive webhooks.

    `type` filters by event type and may be repeated; a cursor is only a position,
    so the filter may change between pages.
    """
    if unknown := unknown_query(request, EventQuery, "parameter"):
        return unknown  # a misspelt "afer" must not restart the feed from the beginning
    try:
        after = FeedPosition.from_cursor(query.after) if query.after is not None else FEED_START
    except ValidationError as error:
        return Status(422, {"detail": [f"query.{describe(error)}"]})
    page = event_feed(caller(request), after=after, types=set(query.type or ()), limit=query.limit)
    return Status(
        200,
        {
            "events": [event_out(e) for e in page.events],
            "next_cursor": page.next.cursor,
            "has_more": page.has_more,
        },
    )
