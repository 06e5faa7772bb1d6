"""One line per event in the logs (settings.LOGGING, ad_budget_project/logs.py): an
expected 4xx is one line without a traceback, nothing is printed twice, and the access
log of the development server does not repeat what django.request reports."""

import logging
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
from celery.app.trace import LOG_RECEIVED, LOG_RETRY, LOG_SUCCESS
from django.contrib.auth.models import User
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.utils.log import log_response
from pytest_django import Settings

from ad_budget_project.logs import RoutineTaskLines


@contextmanager
def printed() -> Iterator[StringIO]:
    """What the configured logging handlers print, all of them into one buffer: a line
    printed twice shows up twice. pytest's own capturing handlers are left alone."""
    out = StringIO()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    swapped = []
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not type(
                handler
            ).__module__.startswith("_pytest"):
                swapped.append((handler, handler.setStream(out)))
    try:
        yield out
    finally:
        for handler, stream in swapped:
            if stream is not None:
                handler.setStream(stream)


@pytest.fixture
def debug(settings: Settings) -> None:
    """DEBUG on, as under `make run`: Django's defaults print django.* records a second
    time then."""
    settings.DEBUG = True


@pytest.mark.django_db
@pytest.mark.usefixtures("debug")
def test_a_403_is_one_line_without_a_traceback(client: Client) -> None:
    client.force_login(User.objects.create_user("viewer", is_staff=True))

    with printed() as out:
        response = client.get("/admin/ads/brand/add/")

    assert response.status_code == 403
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    assert lines[0].endswith(
        " WARNING django.request: Forbidden (Permission denied): /admin/ads/brand/add/"
    )


@pytest.mark.usefixtures("debug")
def test_a_404_is_one_line(client: Client) -> None:
    with printed() as out:
        response = client.get("/no-such-page/")

    assert response.status_code == 404
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    assert lines[0].endswith(" WARNING django.request: Not Found: /no-such-page/")


@pytest.mark.usefixtures("debug")
def test_a_request_for_another_host_is_one_line_without_a_traceback(client: Client) -> None:
    with printed() as out:
        response = client.get("/admin/", HTTP_HOST="ads.attacker.example")

    assert response.status_code == 400
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    assert "ERROR django.security.DisallowedHost: Invalid HTTP_HOST header" in lines[0]


def test_a_server_error_keeps_its_traceback(rf: RequestFactory) -> None:
    try:
        raise ZeroDivisionError("a bug")
    except ZeroDivisionError as bug:
        with printed() as out:
            log_response(
                "%s: %s", "Internal Server Error", "/x",
                response=HttpResponse(status=500), request=rf.get("/x"), exception=bug,
            )  # fmt: skip

    assert "ERROR django.request: Internal Server Error: /x\nTraceback" in out.getvalue()
    assert "ZeroDivisionError: a bug" in out.getvalue()


@contextmanager
def development_server() -> Iterator[str]:
    """The development server as `runserver` builds it (static files included), on a
    free port; when the block ends every request has been answered and logged."""
    server = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    # WSGIHandler, not get_wsgi_application(): that runs django.setup() again, which
    # would configure logging afresh behind printed()'s back.
    server.set_app(StaticFilesHandler(WSGIHandler()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.process
@pytest.mark.parametrize(
    ("path", "answer", "line"),
    [
        ("/favicon.ico", 204, 'INFO django.server: "GET /favicon.ico HTTP/1.1" 204 0'),
        ("/no-such-page/", 404, "WARNING django.request: Not Found: /no-such-page/"),
        # runserver serves /static/ itself: django.request never sees these.
        ("/static/none.css", 404, 'WARNING django.server: "GET /static/none.css HTTP/1.1" 404'),
    ],
)  # fmt: skip
@pytest.mark.usefixtures("debug")
def test_the_development_server_logs_one_line_per_request(
    path: str, answer: int, line: str
) -> None:
    with printed() as out, development_server() as base:
        assert status(base + path) == answer

    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    assert line in lines[0]


@pytest.fixture
def celery_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """INFO, as `make run` starts the worker and Beat; an in-process worker of another
    test may have left Celery's loggers at WARNING."""
    for name in ("", "celery", "celery.beat", "celery.worker.strategy", "celery.app.trace"):
        caplog.set_level(logging.INFO, logger=name or None)


def celery_routine_lines() -> None:
    """The lines Celery and Beat log for every task, as they log them."""
    task = {"name": "ads.requeue_spends", "id": "3f0c", "runtime": 0.01, "return_value": None}
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "requeue-spends", "ads.requeue_spends"
    )
    logging.getLogger("celery.worker.strategy").info(LOG_RECEIVED, task)
    logging.getLogger("celery.app.trace").info(LOG_SUCCESS, task)


@pytest.mark.usefixtures("celery_at_info")
def test_celerys_line_for_every_task_is_left_out() -> None:
    with printed() as out:
        celery_routine_lines()
        logging.getLogger("celery.app.trace").info(
            LOG_RETRY, {"name": "ads.record_spend", "id": "9a1b", "exc": "OperationalError()"}
        )

    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    assert "Task ads.record_spend[9a1b] retry: OperationalError()" in lines[0]


@pytest.mark.usefixtures("celery_at_info")
def test_celerys_line_for_every_task_is_kept_when_asked_for() -> None:
    out = StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RoutineTaskLines(every_task=True))  # LOG_EVERY_TASK=1
    logging.getLogger().addHandler(handler)
    try:
        celery_routine_lines()
    finally:
        logging.getLogger().removeHandler(handler)

    assert len(out.getvalue().splitlines()) == 3


@pytest.mark.process
def test_the_fallback_broker_is_used_without_a_warning() -> None:
    """`make run` without Redis announces filesystem://; neither the worker's minutely
    connections nor `manage.py health` may log kombu's "No hostname was supplied"."""
    script = "from ads.health import broker; assert broker().ok"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        env=os.environ | {"DEBUG": "1", "CELERY_BROKER_URL": "filesystem://"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
