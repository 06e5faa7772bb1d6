"""A database that is busy or goes away in the middle of a spend (issue 8, scenario 2's
"clear retryable error", for every entry point): the transaction rolls back whole,
the caller is told to send the same thing again with the same key, and doing so
records the spend exactly once."""

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from ads.models import Campaign
from tests.conftest import make_api_key
from tests.factories import CampaignFactory
from tests.invariants import assert_invariants, snapshot_ledger
from tests.reliability.processes import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def connection_lost_after_the_ledger_insert() -> Iterator[list[str]]:
    """The database fails on the first brand-counter update after a ledger row was
    inserted: the latest point of a spend's transaction, so a rollback that was not
    whole would leave the ledger row or a moved counter behind."""
    seen: list[str] = []

    def fail(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith('INSERT INTO "ads_spendevent"'):
            seen.append("ledger insert")
        elif sql.startswith('UPDATE "ads_brand"') and "ledger insert" in seen:
            seen.append("failed")
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail):
        yield seen


@pytest.fixture
def campaign() -> Campaign:
    return CampaignFactory.create(brand__daily_budget=Decimal(10), evaluated_at=timezone.now())


def test_the_command_says_which_key_to_repeat_and_repeating_it_records_once(
    campaign: Campaign,
) -> None:
    before = snapshot_ledger()
    with connection_lost_after_the_ledger_insert() as seen, pytest.raises(CommandError) as error:
        call_command("simulate_spend", str(campaign.pk), "10.00")

    assert seen == ["ledger insert", "failed"]
    assert_invariants(at=timezone.now(), accepted_keys=[], before=before)
    message = str(error.value)
    assert message.startswith(
        "the database was busy or did not answer (server closed the connection "
        "unexpectedly), so the spend may not have been recorded. Run the command again "
        "with --key "
    )
    match = re.search(r"with --key (\w+) --at (\S+): a key is recorded once", message)
    assert match is not None, message
    key, at = match[1], match[2]
    for _ in range(2):
        call_command("simulate_spend", str(campaign.pk), "10.00", "--key", key, "--at", at)
    assert_invariants(at=timezone.now(), accepted_keys=[key], before=before)
    assert not Campaign.objects.get().is_active  # the retried spend was enforced


def test_the_api_answers_503_retry_and_the_same_request_records_once(
    campaign: Campaign, client: Client
) -> None:
    api_key = make_api_key()
    body = {"campaign_id": campaign.pk, "amount": "10.00", "idempotency_key": "feed-1"}
    before = snapshot_ledger()

    def post() -> Any:
        return client.post(
            "/api/v1/spend", body, content_type="application/json", headers={"X-API-Key": api_key}
        )

    with connection_lost_after_the_ledger_insert():
        refused = post()

    assert refused.status_code == 503
    assert refused["Retry-After"] == "1"
    assert refused.json()["detail"] == [
        "database: busy or unreachable, so the request may not have been recorded; send it "
        "again as it was (each idempotency_key is recorded once)"
    ]
    assert_invariants(at=timezone.now(), accepted_keys=[], before=before)
    statuses = [post().json()["results"][0]["status"] for _ in range(2)]
    assert statuses == ["recorded", "already_recorded"]
    assert_invariants(at=timezone.now(), accepted_keys=["feed-1"], before=before)


@pytest.mark.process
def test_on_sqlite_a_write_lock_held_past_the_timeout_is_a_clear_retryable_error(
    campaign: Campaign,
) -> None:
    """A real lock, not an injected fault: another connection holds SQLite's write lock
    longer than the command waits (SQLITE_TIMEOUT)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL waits on row locks instead")
    before = snapshot_ledger()
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        locked = simulate_spend(campaign.pk, "10.00")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert locked.returncode == 1
    assert "the database was busy or did not answer (database is locked)" in locked.stderr
    assert "Traceback" not in locked.stderr
    assert_invariants(at=timezone.now(), accepted_keys=[], before=before)
    match = re.search(r"with --key (\w+) --at (\S+): a key is recorded once", locked.stderr)
    assert match is not None, locked.stderr
    retried = simulate_spend(campaign.pk, "10.00", "--key", match[1], "--at", match[2])
    assert retried.returncode == 0, retried.stderr
    assert_invariants(at=timezone.now(), accepted_keys=[match[1]], before=before)


def simulate_spend(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "simulate_spend", *map(str, args)],
        cwd=ROOT,
        env=os.environ | {"DATABASE_URL": database_url(), "SQLITE_TIMEOUT": "0.5"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
