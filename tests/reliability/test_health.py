"""`manage.py health`: database, broker and a worker by a round-trip task; exit status 1
when any is down, with what to do (issue 8, security and operations)."""

import os
import subprocess
import sys

import pytest

from ads.models import WorkerPing
from tests.reliability.processes import (
    ROOT,
    closed_port,
    database_url,
    programs,
    redis_server,
    start_worker,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.process]


def health(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `manage.py health`; one that hangs fails the test after 120 s."""
    return subprocess.run(
        [sys.executable, "manage.py", "health", *args],
        cwd=ROOT, env=os.environ | {"DATABASE_URL": database_url()} | env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [" ".join(line.split()[:2]) for line in result.stdout.splitlines()]


@pytest.mark.redis
def test_reports_all_alive_when_a_worker_answers_the_round_trip() -> None:
    with redis_server() as redis, programs() as started:
        started.append(start_worker("health-worker", broker=redis.url))
        result = health("--timeout", "30", CELERY_BROKER_URL=redis.url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result) == ["database ok", "broker ok", "worker ok"]
    assert "health-worker@" in result.stdout
    assert not WorkerPing.objects.exists()  # the command cleans up after itself


@pytest.mark.redis
def test_fails_naming_the_worker_when_none_answers() -> None:
    with redis_server() as redis:
        result = health("--timeout", "2", CELERY_BROKER_URL=redis.url)

    assert result.returncode == 1
    assert lines(result) == ["database ok", "broker ok", "worker DOWN"]
    assert "no worker answered within 2 s; start one (`make run`" in result.stdout  # --timeout
    assert "down: worker" in result.stderr


def test_fails_naming_the_broker_when_redis_is_down() -> None:
    url = closed_port()
    result = health(CELERY_BROKER_URL=url)

    assert result.returncode == 1
    assert lines(result) == ["database ok", "broker DOWN", "worker DOWN"]
    assert f"unreachable at redis://:**@{url.split('//')[1]}" in result.stdout  # kombu's mask
    assert "start Redis or set CELERY_BROKER_URL" in result.stdout
    assert "down: broker, worker" in result.stderr


def test_fails_naming_the_database_when_it_is_down() -> None:
    result = health(
        DATABASE_URL=f"postgres://postgres@{closed_port().split('//')[1].split('/')[0]}/x",
        CELERY_BROKER_URL=closed_port(),
    )

    assert result.returncode == 1
    assert lines(result)[0] == "database DOWN"
    assert "check DATABASE_URL" in result.stdout
    assert "Traceback" not in result.stderr
