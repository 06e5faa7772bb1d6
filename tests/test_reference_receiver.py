"""The reference receiver of docs/INTEGRATION.md (integration/reference_receiver.py), run
as a platform would run it: real HTTP on loopback, each request signed with the
Standard Webhooks library as the sender signs it, and the pull feed served by a small
local server that speaks the feed's contract. The receiver keeps its own SQLite file;
none of these tests needs our database."""

import base64
import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from integration import reference_receiver
from integration.reference_receiver import (
    Event,
    Outcome,
    Receiver,
    Store,
    apply_event,
    poll,
    verify_by_hand,
)

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
API_KEY = "feed-key"
CAMPAIGN = "campaign:7"


def event(sequence: int, stream: str = CAMPAIGN, type_: str = "campaign.paused") -> dict[str, Any]:
    """An event as the feed and the webhooks carry it (the payload cut short)."""
    kind, number = stream.split(":")
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": type_,
        "created_at": "2026-11-27T12:00:00+00:00",
        "brand_id": 1 if kind == "campaign" else int(number),
        "campaign_id": int(number) if kind == "campaign" else None,
        "stream": stream,
        "sequence": sequence,
        "payload": {"actor": "spend", "stream": stream, "sequence": sequence},
    }


Headers = dict[str, str]


def signed(
    data: Mapping[str, Any], *, secret: str = SECRET, at: datetime | None = None
) -> tuple[bytes, Headers]:
    """The body and headers of a webhook request, signed as the sender signs them."""
    at = at or datetime.now(UTC)
    body = json.dumps({"type": data["type"], "timestamp": data["created_at"], "data": data})
    return body.encode(), {
        "Content-Type": "application/json",
        "webhook-id": data["id"],
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(data["id"], at, body),
    }


def post(port: int, body: bytes, headers: Headers) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/hooks/budgets", body, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())["result"]
    finally:
        connection.close()


def sequences(store: Store, stream: str = CAMPAIGN) -> list[int]:
    """The stream's sequence numbers in the order the receiver applied them."""
    return [e.sequence for e in store.applied(stream)]


@dataclass
class Running:
    store: Store
    port: int

    def deliver(self, data: Mapping[str, Any], *, at: datetime | None = None) -> tuple[int, str]:
        return post(self.port, *signed(data, at=at))


@contextmanager
def serving_in_thread(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def receiving(path: Path, apply: Callable[[Event], None] = apply_event) -> Iterator[Running]:
    """The receiver's server in a thread of this process, on a free loopback port."""
    store = Store(str(path), on_apply=apply)
    server = Receiver(("127.0.0.1", 0), store=store, webhook=Webhook(SECRET))
    with serving_in_thread(server):
        yield Running(store, server.server_port)
    store.db.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Running]:
    with receiving(tmp_path / "receiver.sqlite3") as running:
        yield running


def test_a_signed_event_is_applied_and_printed(
    receiver: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    paused = event(1)

    assert receiver.deliver(paused) == (200, Outcome.APPLIED)

    assert receiver.store.applied(CAMPAIGN) == [Event.from_json(paused)]
    assert capsys.readouterr().out == f"applied {CAMPAIGN} #1 campaign.paused {paused['id']}\n"


def tampered(body: bytes, headers: Headers) -> tuple[bytes, Headers]:
    return body.replace(b'"sequence": 1', b'"sequence": 2'), headers


def unsigned(body: bytes, headers: Headers) -> tuple[bytes, Headers]:
    return body, {k: v for k, v in headers.items() if k != "webhook-signature"}


def malformed(body: bytes, headers: Headers) -> tuple[bytes, Headers]:
    return body, headers | {"webhook-signature": "not a signature"}


def other_secret(body: bytes, headers: Headers) -> tuple[bytes, Headers]:
    return signed(json.loads(body)["data"], secret=OTHER_SECRET)


@pytest.mark.parametrize("spoil", [tampered, unsigned, malformed, other_secret])
def test_a_request_that_does_not_verify_gets_401_and_applies_nothing(
    receiver: Running, spoil: Callable[[bytes, Headers], tuple[bytes, Headers]]
) -> None:
    status, _ = post(receiver.port, *spoil(*signed(event(1))))

    assert status == 401
    assert receiver.store.applied(CAMPAIGN) == receiver.store.held(CAMPAIGN) == []


@pytest.mark.parametrize("minutes", [-6, 6])
def test_a_timestamp_more_than_five_minutes_off_is_refused(receiver: Running, minutes: int) -> None:
    status, _ = receiver.deliver(event(1), at=datetime.now(UTC) + timedelta(minutes=minutes))

    assert status == 401
    assert sequences(receiver.store) == []


def test_a_redelivered_id_changes_nothing(
    receiver: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    paused = event(1)
    receiver.deliver(paused)

    # A retry: the same id, signed again with a later timestamp.
    again = receiver.deliver(paused, at=datetime.now(UTC) + timedelta(seconds=30))

    assert again == (200, Outcome.DUPLICATE)
    assert sequences(receiver.store) == [1]
    assert capsys.readouterr().out.count(paused["id"]) == 1


def test_an_event_that_comes_before_its_predecessor_is_held_until_it_comes(
    receiver: Running,
) -> None:
    first, second, third = event(1), event(2), event(3)
    receiver.deliver(first)

    assert receiver.deliver(third) == (200, Outcome.HELD)
    assert receiver.deliver(second) == (200, Outcome.APPLIED)

    assert sequences(receiver.store) == [1, 2, 3]
    assert receiver.store.held(CAMPAIGN) == []


def test_a_new_streams_first_event_is_sequence_one(receiver: Running) -> None:
    second, first = event(2), event(1)

    assert receiver.deliver(second) == (200, Outcome.HELD)
    assert receiver.deliver(first) == (200, Outcome.APPLIED)

    assert sequences(receiver.store) == [1, 2]


def test_a_gap_in_one_stream_holds_no_other_stream(receiver: Running) -> None:
    receiver.deliver(event(2))

    assert receiver.deliver(event(1, stream="brand:1", type_="brand.settings_changed")) == (
        200,
        Outcome.APPLIED,
    )
    assert sequences(receiver.store, "brand:1") == [1]


def test_a_missing_event_is_waited_for_max_hold_seconds_then_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(str(tmp_path / "receiver.sqlite3"), max_hold=60)
    late = event(2)
    store.receive(Event.from_json(event(1)), now=1000)
    store.receive(Event.from_json(event(3)), now=1000)

    store.release_overdue(now=1059)
    assert sequences(store) == [1]
    store.release_overdue(now=1060)
    assert sequences(store) == [1, 3]

    assert store.receive(Event.from_json(late), now=1100) == Outcome.STALE
    assert sequences(store) == [1, 3]
    assert f"gap: {CAMPAIGN} #2 to #2 never came\n" in capsys.readouterr().out


def test_a_restart_keeps_what_was_applied_and_what_was_held(tmp_path: Path) -> None:
    path = tmp_path / "receiver.sqlite3"
    first, second, third = event(1), event(2), event(3)
    with receiving(path) as before:
        before.deliver(first)
        before.deliver(third)

    with receiving(path) as after:
        assert after.deliver(first) == (200, Outcome.DUPLICATE)
        assert after.deliver(second) == (200, Outcome.APPLIED)

        assert sequences(after.store) == [1, 2, 3]


def test_an_event_not_applied_is_answered_500_and_applied_on_the_retry(tmp_path: Path) -> None:
    failures = [RuntimeError("the ad platform is down")]

    def apply(event: Event) -> None:
        if failures:
            raise failures.pop()

    paused = event(1)
    with receiving(tmp_path / "receiver.sqlite3", apply) as receiver:
        assert receiver.deliver(paused)[0] == 500
        assert sequences(receiver.store) == []

        assert receiver.deliver(paused) == (200, Outcome.APPLIED)
        assert sequences(receiver.store) == [1]


@pytest.mark.parametrize("spoil", [tampered, unsigned, malformed, other_secret])
def test_verifying_by_hand_refuses_what_the_library_refuses(
    spoil: Callable[[bytes, Headers], tuple[bytes, Headers]],
) -> None:
    body, headers = spoil(*signed(event(1)))

    assert not verify_by_hand(SECRET, body, headers, now=time.time())
    with pytest.raises((WebhookVerificationError, ValueError)):
        Webhook(SECRET).verify(body, headers)


def test_verifying_by_hand_accepts_what_the_library_accepts() -> None:
    body, headers = signed(event(1))
    # A sender rotating its secret signs with both; either one verifies.
    headers["webhook-signature"] = (
        signed(event(1), secret=OTHER_SECRET)[1]["webhook-signature"]
        + " "
        + headers["webhook-signature"]
    )

    assert verify_by_hand(SECRET, body, headers, now=time.time())
    assert Webhook(SECRET).verify(body, headers)["data"]["sequence"] == 1


def test_verifying_by_hand_refuses_an_old_timestamp() -> None:
    body, headers = signed(event(1), at=datetime.now(UTC) - timedelta(minutes=6))

    assert not verify_by_hand(SECRET, body, headers, now=time.time())


def test_the_test_vector_of_the_integration_guide_verifies() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = (
        '{"type": "campaign.paused", "timestamp": "2026-11-27T12:00:00+00:00",'
        ' "data": {"id": "evt_27a847c2cd9d42628b40c17560814ac6"}}'
    )
    headers = {
        "webhook-id": "evt_27a847c2cd9d42628b40c17560814ac6",
        "webhook-timestamp": "1795780805",
        "webhook-signature": "v1,x4ssQaBGulGY/vv64PVgZWlVF7CKeTZgLWy1L1bJIsU=",
    }
    at = datetime.fromtimestamp(1795780805, UTC)

    assert Webhook(secret).sign(headers["webhook-id"], at, body) == headers["webhook-signature"]
    assert verify_by_hand(secret, body.encode(), headers, now=at.timestamp())


# Pull: a feed with two pages, as GET /api/v1/events answers them.

FIRST, SECOND, THIRD = event(1), event(2), event(3)
THRESHOLD = event(1, stream="brand:1", type_="budget.threshold_reached")
PAGES = {
    None: {"events": [FIRST, SECOND], "next_cursor": "c2", "has_more": True},
    "c2": {"events": [THRESHOLD, THIRD], "next_cursor": "c4", "has_more": False},
    "c4": {"events": [], "next_cursor": "c4", "has_more": False},
}


class Feed(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.requests: list[tuple[str | None, str | None]] = []  # (after, the API key)
        self.redirect = False
        self.stuck = False  # says it has more, with the cursor it was given
        super().__init__(("127.0.0.1", 0), FeedHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def afters(self) -> list[str | None]:
        return [after for after, _key in self.requests]


class FeedHandler(BaseHTTPRequestHandler):
    server: Feed

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        after = query.get("after", [None])[0]
        self.server.requests.append((after, self.headers["X-API-Key"]))
        assert url.path == "/api/v1/events"
        assert query["limit"] == ["100"]
        if self.server.redirect:
            self.send_response(302)
            self.send_header("Location", f"{self.server.url}/elsewhere")
            self.end_headers()
            return
        page = PAGES[after] | (
            {"has_more": True, "next_cursor": after} if self.server.stuck else {}
        )
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@pytest.fixture
def feed() -> Iterator[Feed]:
    server = Feed()
    with serving_in_thread(server):
        yield server


def test_poll_follows_the_pages_and_applies_each_event_once(tmp_path: Path, feed: Feed) -> None:
    store = Store(str(tmp_path / "receiver.sqlite3"))

    assert poll(store, url=feed.url, api_key=API_KEY) == 4

    assert sequences(store) == [1, 2, 3]
    assert sequences(store, "brand:1") == [1]
    assert feed.requests == [(None, API_KEY), ("c2", API_KEY)]
    assert store.cursor(feed.url) == "c4"


def test_poll_resumes_from_the_stored_cursor_and_fetches_nothing_twice(
    tmp_path: Path, feed: Feed, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "receiver.sqlite3")
    poll(Store(path), url=feed.url, api_key=API_KEY)
    capsys.readouterr()

    restarted = Store(path)
    assert poll(restarted, url=feed.url, api_key=API_KEY) == 0

    assert feed.afters() == [None, "c2", "c4"]
    assert sequences(restarted) == [1, 2, 3]
    assert capsys.readouterr().out == ""


def test_push_and_pull_into_one_store_apply_each_event_once(
    receiver: Running, feed: Feed, capsys: pytest.CaptureFixture[str]
) -> None:
    assert receiver.deliver(FIRST) == (200, Outcome.APPLIED)
    assert receiver.deliver(THIRD) == (200, Outcome.HELD)  # the webhook for 2 is late

    poll(receiver.store, url=feed.url, api_key=API_KEY)  # the feed repairs the gap

    assert sequences(receiver.store) == [1, 2, 3]
    printed = capsys.readouterr().out
    assert [printed.count(e["id"]) for e in (FIRST, SECOND, THIRD)] == [1, 1, 1]


def test_poll_follows_no_redirect(tmp_path: Path, feed: Feed) -> None:
    feed.redirect = True

    with pytest.raises(HTTPError) as refused:
        poll(Store(str(tmp_path / "receiver.sqlite3")), url=feed.url, api_key=API_KEY)

    assert refused.value.code == 302
    assert feed.afters() == [None]  # the API key went nowhere else


def test_poll_stops_when_the_feed_has_more_but_its_cursor_does_not_move(
    tmp_path: Path, feed: Feed
) -> None:
    store = Store(str(tmp_path / "receiver.sqlite3"))
    poll(store, url=feed.url, api_key=API_KEY)
    feed.stuck = True

    with pytest.raises(ValueError, match="cursor did not move"):
        poll(store, url=feed.url, api_key=API_KEY)

    assert feed.afters() == [None, "c2", "c4"]


# The module run as a program, as a platform engineer runs it.


class Lines:
    """A child process's output, line by line, without blocking for ever."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self.read, args=(stream,), daemon=True).start()

    def read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def next(self, seconds: float = 20) -> str:
        try:
            return self.lines.get(timeout=seconds)
        except queue.Empty:
            pytest.fail(f"the receiver printed nothing within {seconds} s")


def command(*args: str) -> list[str]:
    return [sys.executable, reference_receiver.__file__, *args]


@contextmanager
def serving(db: Path) -> Iterator[tuple[int, Lines]]:
    process = subprocess.Popen(
        command("serve", "--port", "0", "--db", str(db)),
        env=os.environ | {"WEBHOOK_SECRET": SECRET},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        listening = lines.next()
        assert listening.startswith("listening on http://127.0.0.1:")
        yield int(listening.rsplit(":", 1)[1].strip("/")), lines
    finally:
        process.terminate()  # SIGTERM: no clean-up, as a crash or a kill
        process.wait(timeout=10)


@pytest.mark.process
def test_the_serve_command_applies_and_keeps_its_state_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "receiver.sqlite3"
    first, second = event(1), event(2)
    with serving(db) as (port, lines):
        assert post(port, *signed(first)) == (200, Outcome.APPLIED)
        assert lines.next() == f"applied {CAMPAIGN} #1 campaign.paused {first['id']}"

    with serving(db) as (port, lines):
        assert post(port, *signed(first)) == (200, Outcome.DUPLICATE)
        assert post(port, *signed(second)) == (200, Outcome.APPLIED)
        assert lines.next() == f"applied {CAMPAIGN} #2 campaign.paused {second['id']}"

    assert sequences(Store(str(db))) == [1, 2]


@pytest.mark.process
def test_the_poll_command_catches_up_once_and_exits(tmp_path: Path, feed: Feed) -> None:
    db = str(tmp_path / "receiver.sqlite3")
    run = subprocess.run(
        command("poll", "--url", feed.url, "--db", db),
        env=os.environ | {"FEED_API_KEY": API_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert run.stdout.splitlines()[-1] == "polled 4 events"
    assert sequences(Store(db)) == [1, 2, 3]
