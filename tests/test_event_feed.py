"""GET /api/v1/events (issue 15, "Pull"): pages from a cursor that a connector stores and
resumes from after any downtime, missing nothing and getting nothing twice; the key's
brands only; filters and limits; and, on PostgreSQL, an event committed late by a slow
transaction served after the cursor instead of skipped.

The tests commit (transaction=True): on PostgreSQL the feed serves only what every
transaction older than the event's has finished with, and a test's own wrapping
transaction would be one of them."""

import base64
import threading
from collections import defaultdict
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client

from ads.models import Brand, Campaign, Event, EventType
from ads.services import refresh_campaign_states, set_campaigns_enabled
from ads.validation import EVENT_PAGE_DEFAULT, EVENT_PAGE_MAX
from tests.conftest import NOW, make_api_key, wait_until
from tests.factories import BrandFactory, CampaignFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("frozen_clock")]

BEGINNING = base64.urlsafe_b64encode(b"v1:0:0").decode().rstrip("=")
CURSOR_INVALID = (
    "is not a cursor of this feed; pass a next_cursor it gave unchanged, or leave after out "
    "to start from the beginning"
)


def horizon() -> int:
    """PostgreSQL: the oldest transaction still running anywhere on the server."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        (xmin,) = cursor.fetchone() or (0,)
    return int(xmin)


def wait_for_horizon_past(txid: int) -> None:
    """On PostgreSQL, wait until every transaction up to `txid` has ended. Only ours run
    in this database, but a test run on another database of the same server (the
    machine is shared) may hold a transaction open for a moment, and the feed rightly
    waits for it too."""
    if connection.vendor == "postgresql":
        wait_until(lambda: horizon() > txid, f"transactions up to {txid} ended", seconds=30)


def settled() -> None:
    """Every event committed so far can be served."""
    last = Event.objects.order_by("-txid").values_list("txid", flat=True).first()
    wait_for_horizon_past(last or 0)


def feed(client: Client, key: str, *, settle: bool = True, **params: Any) -> tuple[int, Any]:
    if settle:
        settled()
    response = client.get("/api/v1/events", params, headers={"X-API-Key": key})
    return response.status_code, response.json()


def ids(page: dict[str, Any]) -> list[str]:
    return [event["id"] for event in page["events"]]


def log_ids(*campaigns: Campaign, **filters: Any) -> list[str]:
    """The event ids in the log, in the order they were written (one writer at a time
    in these tests), of these campaigns if any are given."""
    events = Event.objects.filter(**filters).order_by("pk")
    if campaigns:
        events = events.filter(campaign__in=campaigns)
    return list(events.values_list("event_id", flat=True))


def pause(*campaigns: Campaign, actor: str = "alice") -> None:
    """A person switches campaigns off: a settings change and a pause for each."""
    set_campaigns_enabled([c.pk for c in campaigns], enabled=False, actor=actor, at=NOW)


def busy_brand(campaigns: int = 3) -> list[Campaign]:
    """A brand whose campaigns started running (an event each), then were switched off
    one by one (two events each): 3 * campaigns events in all."""
    brand = BrandFactory.create()
    running = CampaignFactory.create_batch(campaigns, brand=brand, evaluated_at=NOW)
    for campaign in running:
        pause(campaign)
    return running


# --- Pages and cursors ---------------------------------------------------------------


def test_an_event_reads_as_the_log_wrote_it(client: Client, api_key: str) -> None:
    campaign = CampaignFactory.create(name="Search", evaluated_at=NOW)
    event = Event.objects.get()

    status, page = feed(client, api_key)

    assert status == 200
    assert page["events"] == [
        {
            "id": event.event_id,
            "type": "campaign.resumed",
            "created_at": "2026-11-27T12:00:00Z",
            "brand_id": campaign.brand_id,
            "campaign_id": campaign.pk,
            "stream": f"campaign:{campaign.pk}",
            "sequence": 1,
            "payload": event.payload,
        }
    ]
    assert page["events"][0]["payload"]["campaign"]["name"] == "Search"
    assert page["has_more"] is False


def test_three_pages_together_are_every_event_once_in_order(client: Client, api_key: str) -> None:
    busy_brand(campaigns=3)  # 9 events

    _, first = feed(client, api_key, limit=4)
    _, second = feed(client, api_key, limit=4, after=first["next_cursor"])
    _, third = feed(client, api_key, limit=4, after=second["next_cursor"])

    assert ids(first) + ids(second) + ids(third) == log_ids()
    assert [len(p["events"]) for p in (first, second, third)] == [4, 4, 1]
    assert [p["has_more"] for p in (first, second, third)] == [True, True, False]


def test_a_connector_resumes_from_its_stored_cursor_and_gets_only_what_is_new(
    client: Client, api_key: str
) -> None:
    first, second = busy_brand(campaigns=2)
    _, caught_up = feed(client, api_key)
    stored = caught_up["next_cursor"]
    before = set(log_ids())
    # Downtime: the campaigns are switched back on and run again.
    set_campaigns_enabled([first.pk, second.pk], enabled=True, actor="bob", at=NOW)

    _, resumed = feed(client, api_key, after=stored)

    assert ids(resumed) == [i for i in log_ids() if i not in before]
    assert len(ids(resumed)) == 4  # a settings change and a resume each
    assert resumed["has_more"] is False


def test_reading_the_same_cursor_again_gives_the_same_page(client: Client, api_key: str) -> None:
    busy_brand(campaigns=2)
    _, first = feed(client, api_key, limit=3)

    _, again = feed(client, api_key, limit=3, after=BEGINNING)

    assert again == first


def test_an_empty_feed_answers_the_beginning_and_the_next_event_comes_from_it(
    client: Client, api_key: str
) -> None:
    _, empty = feed(client, api_key)
    CampaignFactory.create(evaluated_at=NOW)

    _, later = feed(client, api_key, after=empty["next_cursor"])

    assert empty == {"events": [], "next_cursor": BEGINNING, "has_more": False}
    assert ids(later) == log_ids()


def test_an_empty_page_keeps_the_cursor_it_was_given(client: Client, api_key: str) -> None:
    busy_brand(campaigns=1)
    _, all_of_it = feed(client, api_key)
    cursor = all_of_it["next_cursor"]

    _, empty = feed(client, api_key, after=cursor)

    assert empty == {"events": [], "next_cursor": cursor, "has_more": False}


def test_each_campaigns_events_come_in_sequence_order_across_pages(
    client: Client, api_key: str
) -> None:
    campaigns = busy_brand(campaigns=3)
    # Interleave the streams: every campaign resumes in one transaction, then each is
    # paused again on its own.
    set_campaigns_enabled([c.pk for c in campaigns], enabled=True, actor="bob", at=NOW)
    for campaign in reversed(campaigns):
        pause(campaign, actor="carol")
    pages, cursor = [], BEGINNING
    while True:
        _, page = feed(client, api_key, limit=2, after=cursor)
        pages.append(page)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break

    per_stream = defaultdict(list)
    for page in pages:
        for event in page["events"]:
            per_stream[event["stream"]].append(event["sequence"])

    assert per_stream == {f"campaign:{c.pk}": [1, 2, 3, 4, 5, 6, 7] for c in campaigns}


# --- Filters and limits ----------------------------------------------------------------


def test_the_type_filter_serves_only_that_type(client: Client, api_key: str) -> None:
    busy_brand(campaigns=2)

    _, paused = feed(client, api_key, type="campaign.paused")

    assert ids(paused) == log_ids(type=EventType.CAMPAIGN_PAUSED)
    assert len(ids(paused)) == 2


def test_the_type_parameter_repeats_for_several_types(client: Client, api_key: str) -> None:
    busy_brand(campaigns=2)

    _, both = feed(client, api_key, type=["campaign.paused", "campaign.resumed"])

    assert ids(both) == log_ids(type__in=[EventType.CAMPAIGN_PAUSED, EventType.CAMPAIGN_RESUMED])
    assert len(ids(both)) == 4


def test_a_cursor_read_with_one_filter_resumes_with_another(client: Client, api_key: str) -> None:
    busy_brand(campaigns=2)
    _, resumed = feed(client, api_key, type="campaign.resumed")  # ends at the second resume

    _, rest = feed(client, api_key, after=resumed["next_cursor"])

    everything = log_ids()
    assert ids(rest) == everything[everything.index(ids(resumed)[-1]) + 1 :]


def test_a_page_holds_100_events_unless_asked_and_500_at_most(client: Client, api_key: str) -> None:
    brand = BrandFactory.create()
    CampaignFactory.create_batch(EVENT_PAGE_DEFAULT + 1, brand=brand)
    refresh_campaign_states(at=NOW, actor="test", brand_ids=[brand.pk])  # one event each

    _, default = feed(client, api_key)
    largest_status, largest = feed(client, api_key, limit=EVENT_PAGE_MAX)
    _, one = feed(client, api_key, limit=1)

    assert (len(default["events"]), default["has_more"]) == (100, True)
    assert (largest_status, len(largest["events"]), largest["has_more"]) == (200, 101, False)
    assert (len(one["events"]), one["has_more"]) == (1, True)


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ("501", "Input should be less than or equal to 500"),
        ("0", "Input should be greater than or equal to 1"),
        ("ten", "Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_a_limit_out_of_bounds_is_refused_naming_it(
    client: Client, api_key: str, limit: str, reason: str
) -> None:
    assert feed(client, api_key, limit=limit) == (422, {"detail": [f"query.limit: {reason}"]})


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-a-cursor", id="not base64 of a cursor"),
        pytest.param("", id="empty"),
        pytest.param(encoded("v2:1:1"), id="another version"),
        pytest.param(encoded("v1:-1:5"), id="negative"),
        pytest.param(encoded("v1:01:5"), id="leading zero"),
        pytest.param(encoded("v1:1:5:7"), id="three numbers"),
        pytest.param(encoded(f"v1:1:{2**63}"), id="beyond a bigint"),
        pytest.param(encoded("v1:0:0") + "==", id="padded"),
        pytest.param(BEGINNING[:4] + "." + BEGINNING[4:], id="a stray character"),
    ],
)
def test_a_malformed_cursor_is_refused_naming_after(
    client: Client, api_key: str, cursor: str
) -> None:
    assert feed(client, api_key, after=cursor) == (
        422,
        {"detail": [f"query.after: '{cursor}' {CURSOR_INVALID}"]},
    )


TYPES = (
    "campaign.paused, campaign.resumed, campaign.reasons_changed, campaign.settings_changed, "
    "budget.threshold_reached, brand.settings_changed"
)


def test_an_unknown_type_is_refused_naming_type(client: Client, api_key: str) -> None:
    assert feed(client, api_key, type=["campaign.paused", "campaign.deleted"]) == (
        422,
        {
            "detail": [
                f"query.type: 'campaign.deleted' is not an event type; give one of {TYPES}, "
                "once per type="
            ]
        },
    )


def test_comma_separated_types_are_refused_not_half_read(client: Client, api_key: str) -> None:
    status, body = feed(client, api_key, type="campaign.paused,campaign.resumed")

    assert status == 422
    assert body["detail"][0].startswith(
        "query.type: 'campaign.paused,campaign.resumed' is not an event type;"
    )


def test_an_unknown_parameter_is_refused_not_ignored(client: Client, api_key: str) -> None:
    busy_brand(campaigns=1)
    _, page = feed(client, api_key)

    # Read as if it were absent, "afer" would start the feed again from the beginning.
    assert feed(client, api_key, afer=page["next_cursor"]) == (
        422,
        {"detail": ["query.afer: unknown parameter"]},
    )


def test_a_request_without_a_key_is_refused(client: Client) -> None:
    assert client.get("/api/v1/events").status_code == 401


# --- Scope -----------------------------------------------------------------------------


def test_a_key_reads_only_its_brands_events(client: Client) -> None:
    ours, theirs = busy_brand(campaigns=2), busy_brand(campaigns=2)
    our_key = make_api_key(ours[0].brand)

    _, page = feed(client, our_key)

    assert ids(page) == log_ids(*ours)
    assert {e["brand_id"] for e in page["events"]} == {ours[0].brand_id}
    assert not set(ids(page)) & set(log_ids(*theirs))


def test_another_keys_cursor_is_only_a_place_and_reads_the_keys_own_brands(
    client: Client,
) -> None:
    ours = CampaignFactory.create(evaluated_at=NOW)
    theirs = CampaignFactory.create(evaluated_at=NOW)
    pause(ours)
    pause(theirs)
    our_key, their_key = make_api_key(ours.brand), make_api_key(theirs.brand)
    _, their_first = feed(client, their_key, limit=1)  # their campaign's start

    _, from_there = feed(client, our_key, after=their_first["next_cursor"])

    assert ids(from_there) == log_ids(ours)[1:]  # ours after that place, none of theirs


def test_another_brands_new_events_leave_a_keys_cursor_where_it_was(client: Client) -> None:
    ours, theirs = busy_brand(campaigns=1), busy_brand(campaigns=1)
    our_key = make_api_key(ours[0].brand)
    _, caught_up = feed(client, our_key)
    set_campaigns_enabled([theirs[0].pk], enabled=True, actor="bob", at=NOW)

    _, again = feed(client, our_key, after=caught_up["next_cursor"])

    assert again == {"events": [], "next_cursor": caught_up["next_cursor"], "has_more": False}


def test_a_key_for_all_brands_reads_every_brands_events(client: Client, api_key: str) -> None:
    ours, theirs = busy_brand(campaigns=1), busy_brand(campaigns=1)

    _, page = feed(client, api_key)

    assert ids(page) == log_ids(*ours, *theirs)
    assert {e["brand_id"] for e in page["events"]} == {ours[0].brand_id, theirs[0].brand_id}


# --- PostgreSQL: transactions that overlap ----------------------------------------------

only_on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite commits one writing transaction at a time, in id order: transactions "
    "never overlap",
)


def transaction_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        (txid,) = cursor.fetchone() or (0,)
    return int(txid)


@only_on_postgresql
def test_a_campaigns_events_keep_their_order_when_an_older_transaction_writes_last(
    client: Client, api_key: str
) -> None:
    """An enforcement pass locks brand after brand in one transaction: it can take its
    transaction id before a spend on a later brand does, and write that brand's next
    events after the spend committed its own."""
    campaign = CampaignFactory.create(evaluated_at=NOW)
    elsewhere = CampaignFactory.create(evaluated_at=NOW)
    younger: list[int] = []
    failures: list[BaseException] = []

    def younger_transaction() -> None:
        try:
            with transaction.atomic():
                pause(campaign, actor="younger")
                younger.append(transaction_id())
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)
        finally:
            connection.close()

    with transaction.atomic():
        Brand.objects.select_for_update().filter(pk=elsewhere.brand_id).exists()
        older = transaction_id()
        thread = threading.Thread(target=younger_transaction)
        thread.start()
        thread.join(timeout=30)
        set_campaigns_enabled([campaign.pk], enabled=True, actor="older", at=NOW)

    _, page = feed(client, api_key)

    assert not failures
    assert older < younger[0]  # the scenario as built
    stream = [e for e in page["events"] if e["stream"] == f"campaign:{campaign.pk}"]
    assert [(e["sequence"], e["payload"]["actor"]) for e in stream] == [
        (1, "test"),
        (2, "younger"),
        (3, "younger"),
        (4, "older"),
        (5, "older"),
    ]


@only_on_postgresql
def test_an_event_committed_late_is_served_after_the_cursor_not_skipped(
    client: Client, api_key: str
) -> None:
    slow, fast, later = (CampaignFactory.create(evaluated_at=NOW) for _ in range(3))
    _, start = feed(client, api_key)
    before = set(log_ids())
    written, commit = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def slow_transaction() -> None:
        """Switches `slow` off, then keeps its transaction open until told to commit."""
        try:
            with transaction.atomic():
                pause(slow, actor="slow")
                written.set()
                if not commit.wait(timeout=30):
                    raise TimeoutError("never told to commit")
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)
        finally:
            written.set()
            connection.close()

    def new_events(campaign: Campaign) -> list[Event]:
        return list(Event.objects.filter(campaign=campaign).exclude(event_id__in=before))

    thread = threading.Thread(target=slow_transaction)
    # `fast` takes its transaction id first (locking its brand's row needs one), writes
    # its events after the slow transaction wrote its own, and commits while the slow
    # one is still open: higher ids, lower txid.
    with transaction.atomic():
        Brand.objects.select_for_update().filter(pk=fast.brand_id).exists()
        thread.start()
        assert written.wait(timeout=30)
        pause(fast, actor="fast")
    pause(later, actor="later")  # begun after the slow transaction, committed before it
    fast_events, later_events = new_events(fast), new_events(later)
    wait_for_horizon_past(fast_events[0].txid)

    _, while_open = feed(client, api_key, settle=False, after=start["next_cursor"])
    commit.set()
    thread.join(timeout=30)
    _, after_commit = feed(client, api_key, after=while_open["next_cursor"])

    assert not failures
    slow_events = new_events(slow)
    # The scenario as built: the slow transaction's events have the lowest ids, and a
    # txid between fast's and later's.
    assert max(e.pk for e in slow_events) < min(e.pk for e in fast_events + later_events)
    assert fast_events[0].txid < slow_events[0].txid < later_events[0].txid
    # While it was open, only fast's were served: later's is committed, but waits
    # behind the open transaction.
    assert ids(while_open) == [e.event_id for e in fast_events]
    # Once it commits, its events come after the cursor (lower ids and all), then later's.
    assert ids(after_commit) == [e.event_id for e in slow_events + later_events]
