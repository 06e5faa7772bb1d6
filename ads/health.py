"""Liveness checks of the database, the broker and the workers, for `manage.py health`
and the API's /health. Each answers within its timeout whatever is down."""

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import Connection

from ads.models import WorkerPing


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def database() -> Check:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # any failure means: not reachable
        return Check("database", False, f"unreachable ({error}); check DATABASE_URL")
    took = (time.monotonic() - started) * 1000
    return Check("database", True, f"{connection.vendor}, answered in {took:.0f} ms")


def broker_error(url: str, timeout: int = 3) -> Exception | None:
    """Why the broker at `url` cannot be reached, or None when it answers. A read
    timeout too: a Redis that accepts connections and never answers must not hang."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    try:
        with Connection(url, connect_timeout=timeout, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as error:  # any failure means: not reachable
        return error
    return None


def broker(timeout: int = 3) -> Check:
    url = settings.CELERY_BROKER_URL
    shown = Connection(url).as_uri()  # the password masked
    started = time.monotonic()
    error = broker_error(url, timeout)
    if error is not None:
        advice = "start Redis or set CELERY_BROKER_URL"
        return Check("broker", False, f"unreachable at {shown} ({error}); {advice}")
    took = (time.monotonic() - started) * 1000
    return Check("broker", True, f"{shown}, answered in {took:.0f} ms")


def worker(timeout: float = 10) -> Check:
    """Send the `ads.ping` task and wait for a worker to mark it answered in the database."""
    from ads.tasks import ping  # the tasks module imports the services; keep this light

    token = secrets.token_hex(16)
    WorkerPing.objects.filter(sent_at__lt=timezone.now() - timedelta(days=1)).delete()
    WorkerPing.objects.create(token=token, sent_at=timezone.now())
    started = time.monotonic()
    try:
        ping.apply_async((token,), expires=timeout, retry=False)
        while time.monotonic() - started < timeout:
            answer = WorkerPing.objects.filter(token=token, answered_at__isnull=False).first()
            if answer is not None:
                took = time.monotonic() - started
                return Check("worker", True, f"{answer.worker} answered in {took:.2f} s")
            time.sleep(0.1)
    except Exception as error:  # the broker refused the task
        return Check("worker", False, f"could not send it a task ({error})")
    finally:
        WorkerPing.objects.filter(token=token).delete()
    return Check(
        "worker",
        False,
        f"no worker answered within {timeout:g} s; start one (`make run`, or `celery -A "
        "ad_budget_project worker`) and check that it uses this database and broker",
    )
