"""Create the local admin login once and print it, with the admin's address."""

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

LOGIN_FILE = settings.VAR_DIR / "admin-login.txt"

NOT_SAVED = (
    "(not saved: with DEBUG off no password is written to disk; keep it in your password "
    "manager, or run `manage.py ensure_admin --reset` for a new one)"
)


def save_login(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only: the file is created 0600, so it
    is never readable by others even for a moment, and an older, wider one is narrowed
    before anything is written to it."""
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)
        file.write(text)


class Command(BaseCommand):
    help = (
        "Create a superuser for local use with a random password and print the login. In "
        "development (DEBUG on) the login is kept in var/admin-login.txt (git-ignored, "
        "readable by its owner only) and printed again on the next run; with DEBUG off it "
        "is printed once and not written anywhere."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")
        parser.add_argument("--reset", action="store_true", help="set a new random password")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        # A password in a file is a development convenience only.
        keep = settings.DEBUG
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        saved = LOGIN_FILE.read_text().strip() if keep and LOGIN_FILE.is_file() else ""
        password = saved.partition(":")[2] if saved.startswith(f"{username}:") else ""
        note = ""
        if user is None or options["reset"] or not (password and user.check_password(password)):
            if user is not None and not options["reset"] and not password:
                self.stdout.write(
                    f"User {username!r} exists with a password this command does not know. "
                    "Run `manage.py ensure_admin --reset` to set a new one."
                )
                return
            password = secrets.token_urlsafe(12)
            if user is None:
                user_model.objects.create_superuser(username=username, password=password)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            if keep:
                save_login(LOGIN_FILE, f"{username}:{password}\n")
            else:
                note = f"\n{NOT_SAVED}"
        self.stdout.write(
            self.style.SUCCESS(f"Admin: {options['url']}  user: {username}  password: {password}")
            + note
        )
