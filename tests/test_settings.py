"""Configuration from the environment; secure defaults (SPEC 9)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "SECURE_SSL_REDIRECT"}
    }
    return subprocess.run(
        command,
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "manage.py", *args], **env)


def assert_one_error_line(result: subprocess.CompletedProcess[str], start: str) -> None:
    """The process failed with exit status 1 and one line on stderr, not a traceback."""
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(start)


# Every way the project is started: each loads the settings first.
ENTRY_POINTS = {
    "manage.py": [sys.executable, "manage.py", "simulate_spend", "3", "12.50"],
    "celery worker": [sys.executable, "-m", "celery", "--app", "ad_budget_project", "worker"],
    "celery beat": [sys.executable, "-m", "celery", "--app", "ad_budget_project", "beat"],
    "wsgi": [sys.executable, "-c", "import ad_budget_project.wsgi"],
    "asgi": [sys.executable, "-c", "import ad_budget_project.asgi"],
}


@pytest.mark.process
@pytest.mark.parametrize("command", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_a_missing_secret_key_is_one_line_on_stderr_not_a_traceback(command: list[str]) -> None:
    result = run(command, DEBUG="0", SECRET_KEY="")

    assert_one_error_line(result, "error: SECRET_KEY is not set. With DEBUG off")


@pytest.mark.process
def test_a_malformed_setting_is_one_line_on_stderr_not_a_traceback() -> None:
    result = manage("check", DEBUG="1", CELERY_VISIBILITY_TIMEOUT="five minutes")

    assert_one_error_line(result, "error: a setting in the environment or .env has an invalid")


@pytest.mark.process
def test_refuses_to_start_without_a_secret_key_when_debug_is_off() -> None:
    result = manage("check", DEBUG="0", SECRET_KEY="")

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "set DEBUG=1 for local development" in result.stderr


@pytest.mark.process
def test_refuses_the_development_placeholder_key_when_debug_is_off() -> None:
    placeholder = "django-insecure-development-only-do-not-use-in-production"

    result = manage("check", DEBUG="0", SECRET_KEY=placeholder)

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


@pytest.mark.process
def test_starts_with_the_placeholder_key_in_debug() -> None:
    assert manage("check", DEBUG="1", SECRET_KEY="").returncode == 0


@pytest.mark.process
def test_deploy_check_is_clean_with_a_real_key() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="k" * 20 + "-real-production-secret-" + "x" * 30,
        ALLOWED_HOSTS="ads.example.com",
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_env_file_make_creates_leaves_debug_off() -> None:
    """`make test` and `make typecheck` create .env from .env.example; a checkout where
    they ran must not serve with DEBUG on and the public development key."""
    settings_lines = [
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]

    assert "DEBUG" not in settings_lines
    assert "SECRET_KEY" not in settings_lines


@pytest.mark.process
def test_debug_is_off_unless_turned_on() -> None:
    result = manage("diffsettings", "--all", SECRET_KEY="k" * 50, DEBUG="")

    assert result.returncode == 0, result.stderr
    assert re.search(r"^(### )?DEBUG = False$", result.stdout, re.MULTILINE), result.stdout
