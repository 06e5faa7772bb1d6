"""A reference receiver for ad_budget_project's events: copy it, then put your own code
in `apply_event` (pause the campaign on your platform, post to your chat...).

    WEBHOOK_SECRET=whsec_... python reference_receiver.py serve --port 8088
    FEED_API_KEY=... python reference_receiver.py poll --url https://budgets.example.com

`serve` receives webhooks: it verifies each request's signature (Standard Webhooks) and
answers 401, applying nothing, when it does not verify. `poll` follows the event feed
from its stored cursor. Both feed one store (a SQLite file), which applies each event
once (a second delivery of an id changes nothing) and the events of one stream (a
campaign, or a brand's own events) in sequence order: an event at or below the
stream's last applied sequence is dropped, the next one is applied, and one that comes
before its predecessors is held until they arrive, or until it has waited --max-hold
seconds (then the missing ones are skipped). A restart keeps all of it.

Python 3.11+ and `pip install standardwebhooks`; nothing else. See docs/INTEGRATION.md.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from standardwebhooks import Webhook, WebhookVerificationError
from standardwebhooks.webhooks import EmptyWebhookSecretError

MAX_BODY = 1_000_000  # bytes; an event is a few kilobytes


@dataclass(frozen=True, slots=True)
class Event:
    """The fields this receiver relies on; `data` is the whole event as sent (with
    `type`, `created_at`, `brand_id`, `campaign_id` and the `payload`)."""

    id: str
    type: str
    stream: str
    sequence: int
    data: dict[str, Any]

    @classmethod
    def from_json(cls, value: object) -> "Event":
        if isinstance(value, dict):
            id_, type_, stream, sequence = map(value.get, ("id", "type", "stream", "sequence"))
            if (
                isinstance(id_, str)
                and isinstance(type_, str)
                and isinstance(stream, str)
                and type(sequence) is int
                and sequence > 0
            ):
                return cls(id_, type_, stream, sequence, value)
        raise ValueError(f"not an event: {value!r:.200}")


class Outcome(StrEnum):
    APPLIED = "applied"  # with any held events that now follow on
    HELD = "held"  # an earlier event of its stream has not come yet
    DUPLICATE = "duplicate"  # this id came before: nothing changes
    STALE = "stale"  # the stream is already past this sequence: dropped


def apply_event(event: Event) -> None:
    """Your code goes here. It runs inside the store's transaction: if it raises, nothing
    is recorded and the sender tries again, so make it safe to run twice."""
    print(f"applied {event.stream} #{event.sequence} {event.type} {event.id}", flush=True)


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,        -- a second delivery of an id is a duplicate
    stream TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    status TEXT NOT NULL,       -- held, applied or stale
    received_at REAL NOT NULL,  -- Unix time, for --max-hold
    applied_order INTEGER,      -- 1, 2, 3... in the order events were applied
    event TEXT NOT NULL         -- the event as received, JSON
);
CREATE INDEX IF NOT EXISTS events_stream ON events (stream, status, sequence);
CREATE INDEX IF NOT EXISTS events_applied ON events (applied_order);
CREATE TABLE IF NOT EXISTS cursors (feed TEXT PRIMARY KEY, cursor TEXT NOT NULL);
"""


class Store:
    """What the receiver has seen and applied, in one SQLite file. Threads share it
    under a lock; a `serve` and a `poll` process may share the file (SQLite's write
    lock orders them)."""

    def __init__(
        self,
        path: str,
        *,
        max_hold: float = 300,
        on_apply: Callable[[Event], None] = apply_event,
    ) -> None:
        self.max_hold = max_hold
        self.on_apply = on_apply
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def receive(self, event: Event, *, now: float) -> Outcome:
        """Take one event, from a webhook or the feed."""
        with self.transaction():
            inserted = self.db.execute(
                "INSERT OR IGNORE INTO events (id, stream, sequence, status, received_at, event)"
                " VALUES (?, ?, ?, 'held', ?, ?)",
                (event.id, event.stream, event.sequence, now, json.dumps(event.data)),
            ).rowcount
            if not inserted:
                return Outcome.DUPLICATE
            if event.sequence <= self._last(event.stream):
                self.db.execute("UPDATE events SET status = 'stale' WHERE id = ?", (event.id,))
                return Outcome.STALE
            self._apply_ready(event.stream, self._last(event.stream))
            applied = event.sequence <= self._last(event.stream)
            return Outcome.APPLIED if applied else Outcome.HELD

    def release_overdue(self, *, now: float) -> None:
        """Stop waiting for what has not come in `max_hold` seconds: a stream with an
        event held that long skips to its lowest held event."""
        query = (
            "SELECT stream, MIN(sequence) FROM events WHERE status = 'held'"
            " GROUP BY stream HAVING MIN(received_at) <= ?"
        )
        with self.lock:  # a read first, so that a quiet receiver never takes the write lock
            if self.db.execute(query, (now - self.max_hold,)).fetchone() is None:
                return
        with self.transaction():
            for stream, first in self.db.execute(query, (now - self.max_hold,)).fetchall():
                last = self._last(stream)
                print(f"gap: {stream} #{last + 1} to #{first - 1} never came", flush=True)
                self._apply_ready(stream, first - 1)

    def _last(self, stream: str) -> int:
        row = self.db.execute(
            "SELECT MAX(sequence) FROM events WHERE stream = ? AND status = 'applied'", (stream,)
        ).fetchone()
        return int(row[0] or 0)

    def _apply_ready(self, stream: str, last: int) -> None:
        """Apply the stream's held events that follow `last` without a gap."""
        while row := self.db.execute(
            "SELECT event FROM events WHERE stream = ? AND status = 'held' AND sequence = ?",
            (stream, last + 1),
        ).fetchone():
            event = Event.from_json(json.loads(row[0]))
            self.db.execute(
                "UPDATE events SET status = 'applied', applied_order ="
                " (SELECT COALESCE(MAX(applied_order), 0) + 1 FROM events) WHERE id = ?",
                (event.id,),
            )
            self.on_apply(event)
            last += 1

    # Reads, for a look at the state (and for the tests).

    def applied(self, stream: str) -> list[Event]:
        """The stream's applied events, in the order they were applied."""
        return self._events(stream, "applied", "applied_order")

    def held(self, stream: str) -> list[Event]:
        return self._events(stream, "held", "sequence")

    def _events(self, stream: str, status: str, order: str) -> list[Event]:
        with self.lock:
            rows = self.db.execute(
                f"SELECT event FROM events WHERE stream = ? AND status = ? ORDER BY {order}",
                (stream, status),
            ).fetchall()
        return [Event.from_json(json.loads(event)) for (event,) in rows]

    def cursor(self, feed: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT cursor FROM cursors WHERE feed = ?", (feed,)).fetchone()
        return None if row is None else str(row[0])

    def save_cursor(self, feed: str, cursor: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?)", (feed, cursor))


# Push: webhooks.


class Receiver(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], *, store: Store, webhook: Webhook) -> None:
        self.store = store
        self.webhook = webhook
        super().__init__(address, WebhookHandler)

    def service_actions(self) -> None:
        """Between requests, twice a second: stop waiting for what is overdue."""
        self.store.release_overdue(now=time.time())


class WebhookHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        try:
            length = int(self.headers["Content-Length"])
        except (TypeError, ValueError):
            self.answer(411, "a Content-Length is needed")
            return
        if not 0 < length <= MAX_BODY:
            self.answer(413, f"a body of 1 to {MAX_BODY} bytes is expected")
            return
        body = self.rfile.read(length)
        try:  # the signature of the raw body, before anything reads it
            self.server.webhook.verify(body, dict(self.headers.items()), json_parse=False)
        except (WebhookVerificationError, ValueError):  # ValueError: a malformed header
            self.answer(401, "bad or missing signature, or timestamp more than 5 minutes off")
            return
        try:
            event = Event.from_json(json.loads(body)["data"])
        except (ValueError, KeyError, TypeError):
            self.answer(400, "signed, but not an event")
            return
        try:
            outcome = self.server.store.receive(event, now=time.time())
        except Exception as error:  # nothing was recorded: the sender's retry applies it
            self.log_error("%s not applied: %r", event.id, error)
            self.answer(500, "not applied; try again")
            return
        self.answer(200, outcome)

    def answer(self, status: int, result: str) -> None:
        body = json.dumps({"result": result}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: the store prints a line per applied event; errors are still logged."""


def verify_by_hand(
    secret: str, body: bytes, headers: Mapping[str, str], *, now: float, tolerance: float = 300
) -> bool:
    """What `Webhook(secret).verify` checks, for a platform without the library: an
    HMAC-SHA256 of "<id>.<timestamp>.<body>" with the secret's bytes, in base64, after
    "v1,"; the header may hold several signatures, separated by spaces."""
    headers = {name.lower(): value for name, value in headers.items()}
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not (msg_id and timestamp.isdigit() and abs(now - int(timestamp)) <= tolerance):
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected = b"v1," + base64.b64encode(digest)
    signatures = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, signature.encode()) for signature in signatures)


# Pull: the event feed.


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """A redirect is an error: the API key goes to the feed's address and nowhere else."""


def poll(store: Store, *, url: str, api_key: str, limit: int = 100, timeout: float = 30) -> int:
    """Follow the feed from the stored cursor to its end; return how many events came.
    The cursor is saved after its page is applied: after a crash in between, the page
    comes again and its events are duplicates."""
    opener = urllib.request.build_opener(NoRedirects)
    count = 0
    cursor = store.cursor(url)
    while True:
        query = {"limit": limit} if cursor is None else {"after": cursor, "limit": limit}
        request = urllib.request.Request(
            f"{url.rstrip('/')}/api/v1/events?{urlencode(query)}",
            headers={"X-API-Key": api_key, "Accept": "application/json"},
        )
        with opener.open(request, timeout=timeout) as response:
            page = json.load(response)
        if not (isinstance(page, dict) and isinstance(page.get("events"), list)):
            raise ValueError(f"not a page of the event feed: {page!r:.200}")
        for item in page["events"]:
            store.receive(Event.from_json(item), now=time.time())
        count += len(page["events"])
        next_cursor = page.get("next_cursor")
        if isinstance(next_cursor, str) and next_cursor:
            store.save_cursor(url, next_cursor)
        if page.get("has_more") is not True:
            return count
        if not isinstance(next_cursor, str) or next_cursor == cursor:
            raise ValueError("the feed has more, but its cursor did not move")
        cursor = next_cursor


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Receive ad_budget_project's events.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="receive webhooks (secret from WEBHOOK_SECRET)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8088, help="0: any free port")
    follow = commands.add_parser("poll", help="follow the event feed (key from FEED_API_KEY)")
    follow.add_argument("--url", required=True, help="e.g. https://budgets.example.com")
    follow.add_argument("--limit", type=int, default=100, help="events per page")
    follow.add_argument("--every", type=float, help="seconds between polls (default: poll once)")
    for command in (serve, follow):
        command.add_argument("--db", default="receiver.sqlite3", help="the store's SQLite file")
        command.add_argument(
            "--max-hold", type=float, default=300, help="seconds to wait for a missing event"
        )
    args = parser.parse_args(argv)

    if args.command == "serve":
        secret = os.environ.get("WEBHOOK_SECRET") or parser.error("WEBHOOK_SECRET is not set")
        try:
            webhook = Webhook(secret)
        except (ValueError, EmptyWebhookSecretError):  # ValueError: not base64
            parser.error("WEBHOOK_SECRET is not an endpoint's secret (whsec_ and base64)")
        store = Store(args.db, max_hold=args.max_hold)
        server = Receiver((args.host, args.port), store=store, webhook=webhook)
        print(f"listening on http://{args.host}:{server.server_port}/", flush=True)
        with suppress(KeyboardInterrupt):
            server.serve_forever()
        return

    api_key = os.environ.get("FEED_API_KEY") or parser.error("FEED_API_KEY is not set")
    store = Store(args.db, max_hold=args.max_hold)
    while True:
        try:
            count = poll(store, url=args.url, api_key=api_key, limit=args.limit)
            print(f"polled {count} events", flush=True)
        except (OSError, ValueError) as error:  # OSError: the network, or an HTTP error
            print(f"poll failed: {error}", file=sys.stderr, flush=True)
            if args.every is None:
                sys.exit(1)
        store.release_overdue(now=time.time())
        if args.every is None:
            return
        time.sleep(args.every)


if __name__ == "__main__":
    main()
