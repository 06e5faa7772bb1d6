"""Print the broker URL `make run` should use: the configured one when it answers,
otherwise kombu's filesystem transport under var/broker, with a word on why."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from ads.health import broker_error

FALLBACK = "filesystem://"
NO_BROKER = """
No message broker answers at {url} ({error}).
The demo goes on with a stand-in broker kept in files under var/broker/, which serves
one machine only. For the real setup start Redis (for example `redis-server
--daemonize yes`, or `apt-get install redis-server`, or `brew services start redis`)
and run `make run` again, or point CELERY_BROKER_URL at your Redis, for example
CELERY_BROKER_URL=redis://redis.internal:6379/0 make run
Commands you run in another shell meanwhile (manage.py health, simulate_spend --queue)
need CELERY_BROKER_URL=filesystem:// to reach the stand-in.
"""


class Command(BaseCommand):
    help = "Print the broker URL to use; fall back to a local filesystem broker."

    def handle(self, *args: Any, **options: Any) -> None:
        url = settings.CELERY_BROKER_URL
        if not url.startswith(FALLBACK):
            error = broker_error(url)
            if error is not None:
                self.stderr.write(NO_BROKER.format(url=url, error=error))
                url = FALLBACK
        self.stdout.write(url)
