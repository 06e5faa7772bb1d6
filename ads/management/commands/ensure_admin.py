"""Create the local admin login once and print it, with the admin's address."""

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

LOGIN_FILE = settings.VAR_DIR / "admin-login.txt"


class Command(BaseCommand):
    help = (
        "Create a superuser for local use with a random password, saved in var/admin-login.txt "
        "(git-ignored), and print the login. Run again to print it again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/")
        parser.add_argument("--reset", action="store_true", help="set a new random password")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        saved = LOGIN_FILE.read_text().strip() if LOGIN_FILE.is_file() else ""
        password = saved.partition(":")[2] if saved.startswith(f"{username}:") else ""
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
            LOGIN_FILE.parent.mkdir(exist_ok=True)
            LOGIN_FILE.write_text(f"{username}:{password}\n")
            LOGIN_FILE.chmod(0o600)
        self.stdout.write(
            self.style.SUCCESS(f"Admin: {options['url']}  user: {username}  password: {password}")
        )
