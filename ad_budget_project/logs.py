"""Logging filters for settings.LOGGING: one line per event, and a traceback only where
there is a bug to read.

- An expected client error (a 4xx: a 403 for a Viewer, a 404) is logged without the
  traceback Django attaches to it: the line names the path and the reason.
- Under runserver a 4xx or 5xx is reported once, by `django.request` with its reason,
  not again by the access log (`django.server`), except for files runserver serves
  itself from /static/, which `django.request` never sees.
- Celery's own line for each task received and finished, and Beat's for each task it
  sends, are left out unless LOG_EVERY_TASK is on or the log level is DEBUG: every task
  logs what it did, so an idle minute of `ads.requeue_spends` writes nothing.
"""

import logging

from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS
from django.conf import settings

# (logger, message format) of Celery's routine lines, as Celery logs them.
ROUTINE_TASK_LINES = {
    ("celery.worker.strategy", LOG_RECEIVED),
    ("celery.app.trace", LOG_SUCCESS),
    ("celery.beat", "Scheduler: Sending due task %s (%s)"),
}


def _status(record: logging.LogRecord) -> int | None:
    status = getattr(record, "status_code", None)
    return status if isinstance(status, int) else None


class NoTracebackForClientErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        status = _status(record)
        if status is not None and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


class OneLinePerRequest(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "django.server":
            return True
        status = _status(record)
        if status is None or status < 400:
            return True
        request_line = str(record.args[0]) if isinstance(record.args, tuple) else ""
        path = request_line.split(" ")[1] if request_line.count(" ") >= 2 else ""
        return path.startswith(f"/{settings.STATIC_URL.lstrip('/')}")


class RoutineTaskLines(logging.Filter):
    def __init__(self, every_task: bool = False) -> None:
        super().__init__()
        self.every_task = every_task

    def filter(self, record: logging.LogRecord) -> bool:
        if self.every_task or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        return (record.name, record.msg) not in ROUTINE_TASK_LINES
