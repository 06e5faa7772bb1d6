"""Report whether the database, the broker and a worker are alive; exit 1 if any is not."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ads import health


class Command(BaseCommand):
    help = (
        "Check the database, the message broker, and a worker by a round-trip task "
        "(broker to worker to database); exit status 1 when any of them is down."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout", type=float, default=10, help="seconds to wait for a worker (10)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checks = [health.database(), health.broker()]
        if all(check.ok for check in checks):
            checks.append(health.worker(timeout=options["timeout"]))
        else:
            checks.append(health.Check("worker", False, "not checked: the above is down"))
        for check in checks:
            line = f"{check.name:<9} {'ok' if check.ok else 'DOWN':<5} {check.detail}"
            self.stdout.write(line if check.ok else self.style.ERROR(line))
        down = [check.name for check in checks if not check.ok]
        if down:
            raise CommandError(f"down: {', '.join(down)}")
