import os
from datetime import UTC, datetime

import pytest
from django.conf import settings
from kombu import Connection

# A fixed "now" for tests: Friday 2026-11-27 12:00 UTC.
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


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
