"""The demo data and admin login commands behind `make run`."""

import os
import socket
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from pytest_django import Settings

from ads.management.commands import ensure_admin
from ads.models import Brand, Campaign, SpendEvent
from ads.rules import PauseReason

pytestmark = pytest.mark.django_db


def test_seed_demo_loads_brands_near_and_over_budget_and_runs_twice_without_doubling() -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    events = SpendEvent.objects.count()

    call_command("seed_demo", stdout=StringIO())

    assert SpendEvent.objects.count() == events == 120
    assert Brand.objects.values("timezone").distinct().count() == 6
    assert set(Brand.objects.values_list("currency", flat=True)) == {
        "USD", "JPY", "EUR", "KWD", "GBP"
    }  # fmt: skip
    assert Brand.objects.get(name="Sakura Cosmetics").current_daily_spend == 80_000
    sakura = Campaign.objects.filter(brand__name="Sakura Cosmetics")
    assert all(PauseReason.BRAND_DAILY_BUDGET in c.pause_reasons for c in sakura)
    assert "[6/6] Harbour Books (Europe/London, GBP)" in out.getvalue()
    assert "Sakura Cosmetics     ####################  100%      ¥80,000 of" in out.getvalue()
    assert "Gulf Pearl Jewellery ################....   80%   KWD120.000 of" in out.getvalue()
    # Two brands pay in dollars: $460.00 and $10.00 are added, and nothing else is.
    assert "Spend today by currency: €135.00, £12.00, ¥80,000, KWD120.000, $470.00" in (
        out.getvalue()
    )


@pytest.fixture
def login_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "var" / "admin-login.txt"
    monkeypatch.setattr(ensure_admin, "LOGIN_FILE", path)
    return path


def test_ensure_admin_creates_a_working_login_once(login_file: Path, settings: Settings) -> None:
    settings.DEBUG = True
    first, second = StringIO(), StringIO()

    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)

    password = first.getvalue().split("password: ")[1].strip()
    assert first.getvalue() == second.getvalue()
    assert "http://127.0.0.1:8000/admin/  user: admin" in first.getvalue()
    assert authenticate(username="admin", password=password) is not None


def test_ensure_admin_login_file_is_readable_by_its_owner_only(
    login_file: Path, settings: Settings
) -> None:
    settings.DEBUG = True
    login_file.parent.mkdir()
    login_file.write_text("admin:an-old-password\n")
    login_file.chmod(0o644)
    old_umask = os.umask(0)
    try:
        call_command("ensure_admin", "--reset", stdout=StringIO())
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
    assert login_file.read_text() != "admin:an-old-password\n"


def test_ensure_admin_writes_no_password_to_disk_when_debug_is_off(
    login_file: Path, settings: Settings
) -> None:
    settings.DEBUG = False
    out = StringIO()

    call_command("ensure_admin", stdout=out)

    password = out.getvalue().split("password: ")[1].split()[0]
    assert authenticate(username="admin", password=password) is not None
    assert not login_file.exists()
    assert ensure_admin.NOT_SAVED in out.getvalue()


def test_seed_demo_runs_again_after_a_budget_was_changed() -> None:
    call_command("seed_demo", stdout=StringIO())
    Brand.objects.filter(name="Northwind Coffee").update(daily_budget=600)

    call_command("seed_demo", stdout=StringIO())

    assert SpendEvent.objects.count() == 120


@pytest.mark.process
def test_broker_url_falls_back_when_a_broker_accepts_but_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}

        result = subprocess.run(
            [sys.executable, "manage.py", "broker_url"],
            env=env | {"CELERY_BROKER_URL": url, "DEBUG": "1"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert result.stdout.strip() == "filesystem://"
    assert f"No message broker answers at {url}" in result.stderr
