"""What several test modules share: the fixed clock, the Redis broker, a campaign, an API
key, an admin URL, and waiting for an event instead of sleeping."""

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.db.models import Model
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from kombu import Connection

from ads.api_keys import issue_key
from ads.models import ApiKey, Brand, Campaign
from ads.services import record_spend
from tests.factories import CampaignFactory
from tests.receiver import Receiver, serve

# A fixed "now" for tests: Friday 2026-11-27 12:00 UTC.
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True, scope="session")
def quick_password_hashing() -> Iterator[None]:
    """Passwords hashed with a quick hasher in this process: every `admin_client` and
    UserFactory user has one, and the production hasher's work factor (about 0.2 s a
    password here) was a third of the in-process tests' time. Only the hashing's cost
    changes: logging in, `authenticate` and `check_password` work as before."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture
def frozen_clock(time_machine: time_machine.TimeMachineFixture) -> None:
    """The clock stopped at NOW (12:00 UTC: half of a UTC day has passed), for code that
    reads it: the admin, the API, the commands and the tasks. A module whose tests all
    happen at NOW says `pytestmark = pytest.mark.usefixtures("frozen_clock")`; a test can
    still move `time_machine` on from there."""
    time_machine.move_to(NOW, tick=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for the Redis broker (or a live server) is marked as such, so
    `make test-fast` leaves it out without anyone having to remember the mark."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "redis_broker" in fixtures:
            item.add_marker(pytest.mark.redis)
        if "live_server" in fixtures:
            item.add_marker(pytest.mark.process)


@pytest.fixture(scope="session")
def redis_broker() -> str:
    """The Redis broker the tests use; skipped when absent, except in CI where it fails."""
    url: str = settings.CELERY_BROKER_URL
    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        message = (
            f"no Redis answers at {url} ({error}); start it with `redis-server --daemonize yes` "
            "or point CELERY_BROKER_URL at one"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def campaign() -> Campaign:
    """Acme's campaign "Search", evaluated at NOW (running); Acme's daily budget is 10.00."""
    return CampaignFactory.create(
        name="Search", brand__name="Acme", brand__daily_budget=Decimal("10.00"), evaluated_at=NOW
    )


@pytest.fixture
def search(frozen_clock: None) -> Campaign:
    """Acme's 'Search' (own budget 50.00): 20.00 spent yesterday and 30.00 today, so
    Acme has 30.00 today and 50.00 this month (budgets 100.00 and 3,000.00). 'Other',
    in Tokyo, spent 5.00 of its 10.00 today (a 50 % alert) and is never tampered with.
    The spends are dated by the clock, stopped at NOW."""
    campaign = CampaignFactory.create(brand__name="Acme", name="Search", daily_budget=Decimal(50))
    record_spend(campaign.pk, "20", occurred_at=NOW - timedelta(days=1))
    record_spend(campaign.pk, "30")
    other = CampaignFactory.create(
        brand__name="Other", brand__timezone="Asia/Tokyo", brand__daily_budget=Decimal(10)
    )
    record_spend(other.pk, "5")
    return campaign


def make_api_key(*brands: Brand, name: str = "feed", revoked_at: datetime | None = None) -> str:
    """Save an API key for these brands (none: for all brands) and return its secret,
    which only its creator ever sees."""
    row = ApiKey(name=name, all_brands=not brands, revoked_at=revoked_at)
    secret = issue_key(row)
    row.save()
    if brands:
        row.brands.set(brands)
    return secret


@pytest.fixture
def api_key() -> str:
    """The secret of a saved API key for all brands."""
    return make_api_key()


def wait_until(done: Callable[[], bool], what: str, seconds: float = 60) -> float:
    """Poll `done()` every 50 ms until it is true and return the seconds that took; fail
    naming `what` once `seconds` pass. Wait for the event itself, never sleep and assume."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > seconds:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.05)
    return time.monotonic() - start


def lock_waiters() -> int:
    """PostgreSQL: how many connections to this database wait on a lock now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # the view is cached per transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        (waiting,) = cursor.fetchone() or (0,)
    return int(waiting)


def writes(queries: CaptureQueriesContext) -> list[str]:
    """The INSERT and UPDATE statements among the captured queries."""
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE"))]


def admin_url(obj: Model | type[Model], view: str = "change") -> str:
    """The admin URL of a row's `change` or `delete` page, or of a model's `changelist`
    or `add` page."""
    meta = obj._meta
    name = f"admin:{meta.app_label}_{meta.model_name}_{view}"
    return reverse(name, args=[obj.pk] if view in ("change", "delete") else [])


def rows(model: type[Model]) -> list[dict[str, Any]]:
    """Every row of the model's table, as dictionaries, in primary-key order."""
    return list(model._default_manager.order_by("pk").values())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 (a server in a thread) that records what it gets
    and answers 204 unless told otherwise (`receiver.answer(path, 500, ...)`)."""
    yield from serve(Receiver())


@pytest.fixture
def loopback_webhooks(settings: Any) -> None:
    """Webhooks may go to plain http on loopback, where the tests' receivers listen."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE = True
