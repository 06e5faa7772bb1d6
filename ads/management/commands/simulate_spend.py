import csv
import re
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from ads.models import Brand, SpendSource
from ads.money import format_money
from ads.rules import PauseReason, left_or_over, reasons_label
from ads.services import (
    CampaignState,
    SpendInput,
    SpendResult,
    enqueue_spend,
    record_spend,
    record_spend_batch,
)
from ads.validation import describe, parse_amount, parse_id, parse_idempotency_key


def reasons_text(reasons: tuple[PauseReason, ...]) -> str:
    return reasons_label(reasons).lower() if reasons else ""


BROKER_DOWN = (
    "the message broker did not answer ({error}); nothing was queued. Start Redis or set "
    "CELERY_BROKER_URL, or record the spend directly without --queue"
)
FILE_COLUMNS = (
    "the file needs the columns campaign_id and amount (and may have occurred_at, "
    "idempotency_key and currency) in its first line"
)
EXTRA_CELLS = (
    "more cells than the header has columns (a decimal comma, like 12,50, needs quotes "
    "or a point); nothing was recorded"
)
DATABASE_BUSY = (
    "the database was busy or did not answer ({error}), so the spend may not have been "
    "recorded. Run the command again with --key {key} --at {at}{currency}: a key is "
    "recorded once"
)
FILE_DATABASE_BUSY = (
    "the database was busy or did not answer ({error}), so the file may not have been "
    "recorded. Run the command again: rows with an idempotency_key are recorded once"
)
OPTION_NAMES = {"occurred_at": "--at", "idempotency_key": "--key", "currency": "--currency"}


class Command(BaseCommand):
    help = (
        "Record one spend for a campaign, as an ad platform would report it, and show the "
        "new totals and every campaign whose state changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # argparse takes "-Infinity" or "-1e5" for an unknown option, so the amount check
        # never sees it; this command has no option that looks like a number.
        setattr(  # noqa: B010  # the attribute is argparse's, undocumented
            parser, "_negative_number_matcher", re.compile(r"^-(\d|\.\d|inf|nan|snan)", re.I)
        )
        parser.add_argument("campaign_id", nargs="?", help="id of the campaign that spent")
        parser.add_argument(
            "amount",
            nargs="?",
            help="amount spent, in the brand's currency: a decimal with up to 6 places, 12.50",
        )
        parser.add_argument(
            "--at",
            dest="occurred_at",
            metavar="ISO-8601",
            help="when the spend happened (default now); without an offset it is read as UTC",
        )
        parser.add_argument(
            "--key",
            dest="idempotency_key",
            metavar="IDEMPOTENCY_KEY",
            help="unique key of this spend; sending the same key again records it once",
        )
        parser.add_argument(
            "--currency",
            metavar="CODE",
            help="ISO 4217 code the amount is in (EUR, usd, JPY); refused unless it is the "
            "brand's currency, as nothing is converted. Default: not stated, so the amount is "
            "taken to be in the brand's currency",
        )
        parser.add_argument(
            "--queue",
            action="store_true",
            help="validate now, then hand the spend to a Celery worker to record",
        )
        parser.add_argument(
            "--file",
            metavar="CSV",
            help="record every spend of a CSV file in one transaction (columns campaign_id, "
            "amount, and optionally occurred_at, idempotency_key, currency; an empty cell is "
            "not given); all or nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"]:
            alone = (
                "campaign_id",
                "amount",
                "queue",
                "occurred_at",
                "idempotency_key",
                "currency",
            )
            if any(options[name] for name in alone):
                raise CommandError(
                    "--file takes everything from the file: give no campaign_id, amount, "
                    "--at, --key, --currency or --queue with it (a file's currency column "
                    "states each spend's currency)"
                )
            self.record_file(Path(options["file"]))
            return
        if options["campaign_id"] is None or options["amount"] is None:
            raise CommandError("give campaign_id and amount (or --file CSV)")
        if options["queue"]:
            self.queue(options)
            return
        try:
            # Key and time fixed here when not given, so a failed attempt can say how to
            # repeat it exactly: a retry after midnight must not move the spend a day.
            key = parse_idempotency_key(options["idempotency_key"])
            occurred_at = options["occurred_at"]
            if occurred_at is None:
                occurred_at = timezone.now().isoformat()
            result = record_spend(
                options["campaign_id"],
                options["amount"],
                occurred_at=occurred_at,
                idempotency_key=key,
                currency=options["currency"],
                source=SpendSource.CLI,
            )
        except ValidationError as error:
            raise CommandError(describe(error, OPTION_NAMES)) from None
        except (OperationalError, InterfaceError) as error:
            currency = f" --currency {options['currency']}" if options["currency"] else ""
            raise CommandError(
                DATABASE_BUSY.format(error=error, key=key, at=occurred_at, currency=currency)
            ) from None
        self.report(result)

    def record_file(self, path: Path) -> None:
        rows: list[SpendInput] = []
        lines: list[int] = []
        try:
            with path.open(newline="", encoding="utf-8-sig") as file:
                reader = csv.reader(file)
                header = next(reader, [])
                if not {"campaign_id", "amount"} <= set(header):
                    raise CommandError(f"{path}: {FILE_COLUMNS}")
                while True:
                    start = reader.line_num + 1  # a quoted cell may span lines
                    cells = next(reader, None)
                    if cells is None:
                        break
                    if not cells:  # a blank line
                        continue
                    if len(cells) > len(header):
                        raise CommandError(f"{path}: line {start}: {EXTRA_CELLS}")
                    row = dict(zip(header, cells, strict=False))
                    lines.append(start)
                    rows.append(
                        SpendInput(
                            campaign_id=row.get("campaign_id"),
                            amount=row.get("amount"),
                            occurred_at=row.get("occurred_at") or None,
                            idempotency_key=row.get("idempotency_key") or None,
                            currency=row.get("currency") or None,
                        )
                    )
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise CommandError(f"{path}: cannot read it as CSV ({error})") from None
        try:
            result = record_spend_batch(rows, source=SpendSource.CLI, numbers=lines, label="line")
        except (OperationalError, InterfaceError) as error:
            raise CommandError(f"{path}: {FILE_DATABASE_BUSY.format(error=error)}") from None
        except ValidationError as error:
            bad = error.message_dict.get("events") or [describe(error)]
            raise CommandError(
                f"{path}: nothing was recorded, because of these lines:\n  " + "\n  ".join(bad)
            ) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"{result.recorded} spend(s) recorded, {result.already_recorded} already recorded."
            )
        )
        for change in result.changes:
            self.stdout.write(f"  {self.describe_change(change)}")

    def queue(self, options: dict[str, Any]) -> None:
        try:
            key = enqueue_spend(
                options["campaign_id"],
                options["amount"],
                idempotency_key=options["idempotency_key"],
                occurred_at=options["occurred_at"],
                currency=options["currency"],
            )
        except ValidationError as error:
            raise CommandError(describe(error, OPTION_NAMES)) from None
        except BrokerError as error:  # the broker did not answer
            raise CommandError(BROKER_DOWN.format(error=error)) from None
        campaign_id, amount = parse_id(options["campaign_id"]), parse_amount(options["amount"])
        currency = Brand.objects.values_list("currency", flat=True).get(campaigns__pk=campaign_id)
        self.stdout.write(
            f"Queued spend of {format_money(amount, currency)} on campaign {campaign_id} "
            f"with key {key}; a worker records it. Queue it again with --key {key} if unsure."
        )

    def report(self, result: SpendResult) -> None:
        event, campaign, brand = result.event, result.campaign, result.brand
        currency = brand.currency
        spend = (
            f"spend #{event.pk}: {format_money(event.amount, currency)} "
            f"on campaign {campaign.campaign_id} "
            f'"{campaign.name}", occurred {event.occurred_at.isoformat()}, '
            f"key {event.idempotency_key}"
        )
        if not result.created:
            # Its brand's day may have changed since: the figures below are the new day's,
            # and campaigns paused only for yesterday's budget have resumed.
            again = "Not counted again." if result.changes else "Nothing changed."
            self.stdout.write(f"Already recorded as {spend}. {again}")
        else:
            self.stdout.write(self.style.SUCCESS(f"Recorded {spend}."))
            if not result.counted_today:
                period = "this month's" if result.counted_this_month else "no current"
                self.stdout.write(
                    f"It is dated outside the brand's current day: counted in the ledger and in "
                    f"{period} total, not in today's."
                )
            if not campaign.was_active:
                self.stdout.write(
                    self.style.WARNING(
                        "The campaign was not running when this spend arrived "
                        f"({reasons_text(campaign.old_reasons) or 'not yet evaluated'}); "
                        "the spend is recorded all the same."
                    )
                )
        own = (
            f"own daily budget {format_money(campaign.daily_budget, currency)}, "
            f"{left_or_over(campaign.daily_spend, campaign.daily_budget, currency)}"
            if campaign.daily_budget is not None
            else "no own budget"
        )
        self.stdout.write(
            f'Campaign "{campaign.name}": '
            f"{format_money(campaign.daily_spend, currency)} today ({own}); "
            + (
                "running"
                if campaign.is_active
                else f"paused: {reasons_text(campaign.pause_reasons)}"
            )
        )
        self.stdout.write(
            f'Brand "{brand.name}": today {format_money(brand.daily_spend, currency)} of '
            f"{format_money(brand.daily_budget, currency)} "
            f"({left_or_over(brand.daily_spend, brand.daily_budget, currency)}); "
            f"this month {format_money(brand.monthly_spend, currency)} of "
            f"{format_money(brand.monthly_budget, currency)} "
            f"({left_or_over(brand.monthly_spend, brand.monthly_budget, currency)})"
        )
        if result.changes:
            self.stdout.write("Campaigns whose state changed:")
            for change in result.changes:
                self.stdout.write(f"  {self.describe_change(change)}")
        elif result.created:
            self.stdout.write("No campaign changed state.")

    @staticmethod
    def describe_change(change: CampaignState) -> str:
        return f'campaign {change.campaign_id} "{change.name}": {change.label}'
