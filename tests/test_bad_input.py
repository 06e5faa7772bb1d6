"""Scenario 11: bad input through every entry point (SPEC 2, 4, 9, 11).

Each bad value goes in through every interface that can carry it: the command (one
spend, `--queue`, `--file CSV`), the Celery tasks called as functions,
`enqueue_spend`, the HTTP API (one spend and a batch) and the admin's change forms.
Each must answer with the field and the reason, and write nothing: no ledger row, no
counter, budget, state, audit or alert row changed, nothing queued.
"""

import csv
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import time
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from pytest_django import DjangoCaptureOnCommitCallbacks

from ads import tasks
from ads.models import (
    Brand,
    BudgetAlert,
    Campaign,
    CampaignStatusChange,
    PendingSpend,
    Schedule,
    ScheduleWindow,
    SettingChange,
)
from ads.rules import weekday_mask
from ads.services import record_spend
from tests.conftest import NOW
from tests.factories import BrandFactory, CampaignFactory, ScheduleFactory
from tests.invariants import assert_invariants, snapshot_ledger

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]

# Id 1, so that a JSON `true` or `1.0` read as the number 1 would find a campaign.
CAMPAIGN_ID = 1
GOOD_AMOUNT = "1.00"


class Case(NamedTuple):
    """A bad spend: one field made bad, and the reason every interface must give."""

    field: str
    value: object
    reason: str
    # Where the API's schema checks the JSON type before the services do, its words.
    api_reason: str | None = None
    api_status: int = 422


NOT_TEXT = "must be a decimal number written as text (such as '12.50'), not"
NOT_A_NUMBER = "is not a number; write it like 12.50"
AT_MOST = "must be at most 999,999,999.999999"
NOT_AN_ID = "is not a campaign id; give a positive whole number"
NOT_A_TIME = "is not an ISO-8601 date and time; write it like 2026-11-27T14:30:00+00:00"
DATE_ONLY = (
    "is a date without a time; give the time and its offset, like 2026-11-27T14:30:00+00:00 "
    "(a day means midnight to midnight in the brand's zone, which a date alone cannot say)"
)
IN_THE_FUTURE = "is more than 5 minutes in the future"
NOT_A_CURRENCY = "is not an ISO 4217 currency code; write it like EUR, USD or JPY"
OTHER_CURRENCY = (
    "the spend is in {} but brand 'Acme' pays in EUR; nothing is converted, so send the "
    "amount in EUR"
)
API_NOT_TEXT = "Input should be a valid string"
API_NOT_AN_INT = "Input should be a valid integer"

AMOUNT_CASES = [
    Case("amount", "-5", "must be greater than zero (got '-5')"),
    Case("amount", "0", "must be greater than zero (got '0')"),
    Case("amount", "-0", "must be greater than zero (got '-0')"),
    Case("amount", "NaN", "'NaN' is not a finite amount"),
    Case("amount", "sNaN", "'sNaN' is not a finite amount"),
    Case("amount", "Infinity", "'Infinity' is not a finite amount"),
    Case("amount", "-Infinity", "'-Infinity' is not a finite amount"),
    Case("amount", "1e309", f"{AT_MOST} (got '1e309')"),
    Case("amount", "1000000000", f"{AT_MOST} (got '1000000000')"),
    Case("amount", "0.1234567", "may have at most 6 decimal places (got '0.1234567')"),
    Case("amount", "1,50", f"'1,50' {NOT_A_NUMBER}"),
    Case("amount", "", f"'' {NOT_A_NUMBER}"),
    Case("amount", "1_000", f"'1_000' {NOT_A_NUMBER}"),
    Case(
        "amount", "1; DROP TABLE ads_spendevent", f"'1; DROP TABLE ads_spendevent' {NOT_A_NUMBER}"
    ),
    Case("amount", "' OR 1=1 --", f"'' OR 1=1 --' {NOT_A_NUMBER}"),
    Case("amount", None, f"{NOT_TEXT} NoneType", API_NOT_TEXT),
    Case("amount", True, f"{NOT_TEXT} bool", API_NOT_TEXT),
    Case("amount", 12.5, f"{NOT_TEXT} float", API_NOT_TEXT),
]
CAMPAIGN_ID_CASES = [
    Case("campaign_id", "999999", "no campaign with id 999999", API_NOT_AN_INT),
    Case("campaign_id", 999999, "no campaign with id 999999", api_status=404),
    # The API's schema wants a JSON integer: any string is refused as not one.
    Case("campaign_id", "-3", f"'-3' {NOT_AN_ID}", API_NOT_AN_INT),
    Case("campaign_id", -3, f"-3 {NOT_AN_ID}", "Input should be greater than or equal to 1"),
    Case("campaign_id", "0", f"'0' {NOT_AN_ID}", API_NOT_AN_INT),
    Case("campaign_id", 0, f"0 {NOT_AN_ID}", "Input should be greater than or equal to 1"),
    Case(
        "campaign_id",
        "99999999999999999999",
        f"'99999999999999999999' {NOT_AN_ID}",
        API_NOT_AN_INT,
    ),
    Case(
        "campaign_id",
        2**63,
        f"9223372036854775808 {NOT_AN_ID}",
        "Input should be less than or equal to 9223372036854775807",
    ),
    Case("campaign_id", "abc", f"'abc' {NOT_AN_ID}", API_NOT_AN_INT),
    Case("campaign_id", "", f"'' {NOT_AN_ID}", API_NOT_AN_INT),
    Case("campaign_id", "1.0", f"'1.0' {NOT_AN_ID}", API_NOT_AN_INT),
    Case(
        "campaign_id",
        "1; DROP TABLE ads_spendevent",
        f"'1; DROP TABLE ads_spendevent' {NOT_AN_ID}",
        API_NOT_AN_INT,
    ),
    Case("campaign_id", "' OR 1=1 --", f"'' OR 1=1 --' {NOT_AN_ID}", API_NOT_AN_INT),
    Case("campaign_id", None, f"None {NOT_AN_ID}", API_NOT_AN_INT),
    Case("campaign_id", True, f"True {NOT_AN_ID}", API_NOT_AN_INT),
]
OCCURRED_AT_CASES = [
    Case(
        "occurred_at",
        "2026-11-27T12:05:01+00:00",
        f"2026-11-27T12:05:01+00:00 {IN_THE_FUTURE}",
    ),
    Case(
        "occurred_at",
        "2026-11-27T07:06:00-05:00",
        f"2026-11-27T07:06:00-05:00 {IN_THE_FUTURE}",
    ),
    Case("occurred_at", "9999-12-31T23:59:59", f"9999-12-31T23:59:59+00:00 {IN_THE_FUTURE}"),
    Case(
        "occurred_at",
        "1066-10-14T09:00",
        "1066-10-14T09:00:00+00:00 is more than 400 days in the past",
    ),
    Case("occurred_at", "next tuesday", f"'next tuesday' {NOT_A_TIME}"),
    Case("occurred_at", "2026-13-01T00:00", f"'2026-13-01T00:00' {NOT_A_TIME}"),
    Case("occurred_at", "2026-11-27T12:00+25:00", f"'2026-11-27T12:00+25:00' {NOT_A_TIME}"),
    Case(
        "occurred_at",
        "2026-11-27T12:00; DROP TABLE ads_spendevent",
        f"'2026-11-27T12:00; DROP TABLE ads_spe...' {NOT_A_TIME}",
    ),
    Case("occurred_at", "", f"'' {NOT_A_TIME}"),
    # A date alone would be midnight UTC: the evening before in New York.
    Case("occurred_at", "2026-11-27", f"'2026-11-27' {DATE_ONLY}"),
    Case("occurred_at", "20261127", f"'20261127' {DATE_ONLY}"),
    # The API's schema takes the time as text, so JSON types other than a string are
    # refused there, in its words.
    Case("occurred_at", True, f"True {NOT_A_TIME}", API_NOT_TEXT),
    # NOW as Unix seconds: a number is not an ISO-8601 time, even one that looks like now.
    Case("occurred_at", 1_795_780_800, f"1795780800 {NOT_A_TIME}", API_NOT_TEXT),
]
CURRENCY_CASES = [
    # Acme pays in EUR: a spend in any other currency is refused, never converted.
    Case("currency", "USD", OTHER_CURRENCY.format("USD")),
    Case("currency", "jpy", OTHER_CURRENCY.format("JPY")),
    Case("currency", "EURO", f"'EURO' {NOT_A_CURRENCY}"),
    Case("currency", "€", f"'€' {NOT_A_CURRENCY}"),
    Case("currency", "12", f"'12' {NOT_A_CURRENCY}"),
    Case("currency", "ABC", f"'ABC' {NOT_A_CURRENCY}"),  # three letters, but no currency
    Case("currency", "' OR 1=1 --", f"'' OR 1=1 --' {NOT_A_CURRENCY}"),
    # EUR's ISO 4217 number is not its code; the API's schema wants text.
    Case("currency", 978, f"978 {NOT_A_CURRENCY}", API_NOT_TEXT),
    Case("currency", True, f"True {NOT_A_CURRENCY}", API_NOT_TEXT),
]
SPEND_CASES = AMOUNT_CASES + CAMPAIGN_ID_CASES + OCCURRED_AT_CASES + CURRENCY_CASES


def case_id(field: str, value: object) -> str:
    text = f"{field}={value!r}"
    return text if len(text) <= 48 else text[:45] + "..."


def cases(selected: Sequence[Case]) -> list[object]:
    return [pytest.param(case, id=case_id(case.field, case.value)) for case in selected]


# What a command line or a CSV cell can carry: text only.
TEXT_CASES = [case for case in SPEND_CASES if isinstance(case.value, str)]
# An empty occurred_at cell means "not given" (now), so it is no bad input in a file.
CSV_CASES = [case for case in TEXT_CASES if (case.field, case.value) != ("occurred_at", "")]


@pytest.fixture(autouse=True)
def campaign(frozen_clock: None) -> Campaign:
    """A brand with spend on the books, a campaign with its own budget and a schedule
    that is open now (Friday 12:00 UTC): bad input has counters and state to disturb."""
    schedule = ScheduleFactory.create(name="Office hours")
    ScheduleWindow.objects.create(
        schedule=schedule, weekdays=weekday_mask(range(5)), start=time(9), end=time(17)
    )
    campaign = CampaignFactory.create(
        pk=CAMPAIGN_ID,
        name="Search",
        brand=BrandFactory.create(name="Acme", daily_budget=Decimal("10.00")),
        daily_budget=Decimal("5.00"),
        schedule=schedule,
    )
    record_spend(CAMPAIGN_ID, "2.50", idempotency_key="before-1", at=NOW)
    return campaign


def world() -> tuple[object, ...]:
    """Everything apart from the ledger that bad input must leave as it was."""
    return (
        CampaignStatusChange.objects.count(),
        SettingChange.objects.count(),
        BudgetAlert.objects.count(),
        LogEntry.objects.count(),
        PendingSpend.objects.count(),
        list(Brand.objects.order_by("pk").values_list(
            "name", "timezone", "currency", "is_active", "daily_budget", "monthly_budget",
            "current_daily_spend", "current_monthly_spend", "counters_day", "counters_month",
        )),
        list(Campaign.objects.order_by("pk").values_list(
            "name", "is_enabled", "is_active", "pause_reasons", "daily_budget", "daily_spend",
            "schedule_id",
        )),
        list(Schedule.objects.order_by("pk").values_list("name")),
        list(ScheduleWindow.objects.order_by("pk").values_list(
            "schedule_id", "weekdays", "start", "end"
        )),
    )  # fmt: skip


@contextmanager
def nothing_written() -> Iterator[None]:
    ledger, before = snapshot_ledger(), world()
    yield
    assert snapshot_ledger() == ledger, "the ledger changed"
    assert world() == before, "counters, budgets, states, audit or alert rows changed"
    assert_invariants(at=NOW, before=ledger)


def bad_spend(case: Case) -> dict[str, object]:
    """A good spend with the case's one field made bad."""
    return {"campaign_id": CAMPAIGN_ID, "amount": GOOD_AMOUNT, case.field: case.value}


def good_spend(key: str) -> dict[str, object]:
    return {"campaign_id": CAMPAIGN_ID, "amount": GOOD_AMOUNT, "idempotency_key": key}


def command_line(case: Case) -> list[str]:
    spend = bad_spend(case)
    args = [str(spend["campaign_id"]), str(spend["amount"])]
    if "occurred_at" in spend:
        args += ["--at", str(spend["occurred_at"])]
    if "currency" in spend:
        args += ["--currency", str(spend["currency"])]
    return args


def on_the_command_line(field: str) -> str:
    return {"occurred_at": "--at", "currency": "--currency"}.get(field, field)


def error_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- The command -----------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(TEXT_CASES))
def test_command_refuses_bad_spend_in_one_line_naming_the_field(case: Case) -> None:
    with nothing_written(), pytest.raises(CommandError) as error:
        call_command("simulate_spend", *command_line(case), stdout=StringIO(), stderr=StringIO())

    assert error.value.returncode == 1
    assert str(error.value) == f"{on_the_command_line(case.field)}: {case.reason}"


@pytest.mark.parametrize("case", cases(TEXT_CASES))
def test_command_with_queue_refuses_bad_spend_before_queueing_it(
    case: Case, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with (
        nothing_written(),
        django_capture_on_commit_callbacks() as queued,
        pytest.raises(CommandError) as error,
    ):
        call_command(
            "simulate_spend", *command_line(case), "--queue", stdout=StringIO(), stderr=StringIO()
        )

    assert error.value.returncode == 1
    assert str(error.value) == f"{on_the_command_line(case.field)}: {case.reason}"
    assert queued == []


def test_command_without_an_amount_names_what_is_missing() -> None:
    with nothing_written(), pytest.raises(CommandError, match=r"^give campaign_id and amount"):
        call_command("simulate_spend", str(CAMPAIGN_ID), stdout=StringIO())


# --- The CSV file ----------------------------------------------------------------------


def write_csv(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["campaign_id", "amount", "occurred_at", "idempotency_key", "currency"])
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("case", cases(CSV_CASES))
def test_csv_file_with_one_bad_line_records_none_and_names_line_field_and_reason(
    case: Case, tmp_path: Path
) -> None:
    spend = bad_spend(case)
    file = write_csv(
        tmp_path / "spend.csv",
        [
            [CAMPAIGN_ID, GOOD_AMOUNT, "", "good-1", ""],
            [
                spend["campaign_id"],
                spend["amount"],
                spend.get("occurred_at", ""),
                "bad-1",
                spend.get("currency", ""),
            ],
        ],
    )

    with nothing_written(), pytest.raises(CommandError) as error:
        call_command("simulate_spend", "--file", str(file), stdout=StringIO())

    assert error.value.returncode == 1
    assert str(error.value) == (
        f"{file}: nothing was recorded, because of these lines:\n"
        f"  line 3: {case.field}: {case.reason}"
    )


def test_csv_file_with_an_unquoted_decimal_comma_says_so(tmp_path: Path) -> None:
    file = tmp_path / "spend.csv"
    file.write_text(f"campaign_id,amount\n{CAMPAIGN_ID},1,50\n")

    with nothing_written(), pytest.raises(CommandError) as error:
        call_command("simulate_spend", "--file", str(file), stdout=StringIO())

    assert str(error.value) == (
        f"{file}: line 2: more cells than the header has columns (a decimal comma, like "
        "12,50, needs quotes or a point); nothing was recorded"
    )


# --- Task arguments --------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(SPEND_CASES))
def test_record_spend_task_logs_the_field_and_reason_and_records_nothing(
    case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    with nothing_written(), caplog.at_level(logging.ERROR, logger="ads.tasks"):
        tasks.record_spend(**bad_spend(case), idempotency_key="bad-1")

    [logged] = error_logs(caplog)
    assert logged.startswith(
        f"record_spend rejected, not retried: {case.field}: {case.reason} ("
    ), logged


@pytest.mark.parametrize("case", cases(SPEND_CASES))
def test_record_spend_batch_task_logs_the_row_field_and_reason_and_records_none(
    case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    events = [good_spend("good-1"), {**bad_spend(case), "idempotency_key": "bad-1"}]

    with nothing_written(), caplog.at_level(logging.ERROR, logger="ads.tasks"):
        tasks.record_spend_batch(events)

    assert error_logs(caplog) == [
        f"record_spend_batch rejected, not retried: events: row 2: {case.field}: {case.reason}"
    ]


@pytest.mark.parametrize("case", cases(SPEND_CASES))
def test_enqueue_spend_refuses_bad_spend_naming_the_field_and_queues_nothing(
    case: Case, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    spend = bad_spend(case)

    with (
        nothing_written(),
        django_capture_on_commit_callbacks() as queued,
        pytest.raises(ValidationError) as error,
    ):
        tasks.enqueue_spend(
            spend["campaign_id"],
            spend["amount"],
            occurred_at=spend.get("occurred_at"),
            currency=spend.get("currency"),
            idempotency_key="bad-1",
        )

    assert error.value.message_dict == {case.field: [case.reason]}
    assert queued == []


# --- The HTTP API ----------------------------------------------------------------------


def post_spend(client: Client, api_key: str, body: object) -> tuple[int, Any]:
    response = client.post(
        "/api/v1/spend", body, content_type="application/json", headers={"X-API-Key": api_key}
    )
    return response.status_code, response.json()


def assert_one_line_naming(lines: object, case: Case, *, row: int | None = None) -> None:
    """One line for the one bad field: its name and the reason (and in a batch, its
    row); no lines about fields that were fine, no validator internals."""
    assert isinstance(lines, list), lines
    assert len(lines) == 1, lines
    [line] = lines
    assert f"{case.field}: {case.api_reason or case.reason}" in line, line
    if row is not None:
        assert re.search(rf"\b(index {row}|events\.{row})\b", line), line
    assert "function-wrap" not in line, line


@pytest.mark.parametrize("case", cases(SPEND_CASES))
def test_api_refuses_one_bad_spend_naming_the_field_and_the_reason(
    case: Case, client: Client, api_key: str
) -> None:
    with nothing_written():
        status, body = post_spend(client, api_key, {**bad_spend(case), "idempotency_key": "bad-1"})

    assert status == case.api_status, body
    assert_one_line_naming(body["detail"], case)


@pytest.mark.parametrize("case", cases(SPEND_CASES))
def test_api_refuses_a_batch_with_one_bad_spend_naming_its_index_and_records_none(
    case: Case, client: Client, api_key: str
) -> None:
    events = [good_spend("good-1"), {**bad_spend(case), "idempotency_key": "bad-1"}]

    with nothing_written():
        status, body = post_spend(client, api_key, {"events": events})

    assert status == case.api_status, body
    assert_one_line_naming(body["detail"], case, row=1)


# --- Every spend entry point takes the good spend the cases start from ------------------


def test_the_spend_the_bad_cases_start_from_is_accepted_everywhere(
    client: Client,
    api_key: str,
    tmp_path: Path,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    """So each refusal above is the bad field's doing, not the rest of the spend's."""
    call_command("simulate_spend", str(CAMPAIGN_ID), GOOD_AMOUNT, stdout=StringIO())
    file = write_csv(tmp_path / "good.csv", [[CAMPAIGN_ID, GOOD_AMOUNT, "", "file-1"]])
    call_command("simulate_spend", "--file", str(file), stdout=StringIO())
    tasks.record_spend(**good_spend("task-1"))
    tasks.record_spend_batch([good_spend("batch-1")])
    assert post_spend(client, api_key, good_spend("api-1"))[0] == 200
    assert post_spend(client, api_key, {"events": [good_spend("api-2")]})[0] == 200
    with django_capture_on_commit_callbacks() as queued:
        tasks.enqueue_spend(CAMPAIGN_ID, GOOD_AMOUNT, idempotency_key="queued-1")

    assert len(snapshot_ledger()) == 1 + 6
    assert len(queued) == 1
    assert_invariants(at=NOW)


@pytest.mark.parametrize("code", ["EUR", "eur", " Eur "])
def test_the_same_spend_stating_the_brands_own_currency_is_accepted_everywhere(
    code: str,
    client: Client,
    api_key: str,
    tmp_path: Path,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    """Acme pays in EUR: stating it, in any case, is what not stating it is."""
    stated = {"currency": code}
    call_command(
        "simulate_spend", str(CAMPAIGN_ID), GOOD_AMOUNT, "--currency", code, stdout=StringIO()
    )
    file = write_csv(tmp_path / "good.csv", [[CAMPAIGN_ID, GOOD_AMOUNT, "", "file-1", code]])
    call_command("simulate_spend", "--file", str(file), stdout=StringIO())
    tasks.record_spend(**good_spend("task-1"), **stated)
    tasks.record_spend_batch([{**good_spend("batch-1"), **stated}])
    with django_capture_on_commit_callbacks() as queued:
        tasks.enqueue_spend(CAMPAIGN_ID, GOOD_AMOUNT, idempotency_key="queued-1", currency=code)
    tasks.record_spend(**queued[0].args[0])  # type: ignore[attr-defined]  # a functools.partial
    if code.strip() == code:  # the API's schema wants exactly three letters
        assert post_spend(client, api_key, {**good_spend("api-1"), **stated})[0] == 200
        body = {"events": [{**good_spend("api-2"), **stated}]}
        assert post_spend(client, api_key, body)[0] == 200

    recorded = 1 + 5 + (2 if code.strip() == code else 0)
    assert len(snapshot_ledger()) == recorded
    assert Brand.objects.get().current_daily_spend == Decimal("2.50") + recorded - 1
    assert not PendingSpend.objects.exists()
    assert_invariants(at=NOW)


# --- The admin -------------------------------------------------------------------------


class FormCase(NamedTuple):
    """A bad value in an admin change form, and the error shown for its field."""

    page: str  # brand, campaign or schedule
    field: str  # as posted; the schedule's windows are shown together as "windows"
    value: object
    reason: str


GE_ZERO = "Ensure this value is greater than or equal to 0."
ENTER_A_NUMBER = "Enter a number."
# The form field takes 3 places (KWD has them); the brand's currency, EUR, has 2.
EUR_CENTS = "EUR (Euro) amounts have at most 2 decimal places (got {})"
NOT_OFFERED = "Select a valid choice. {} is not one of the available choices."
CURRENCY_FIXED = (
    "The currency stays EUR: this brand has spend in EUR, and a ledger or budget must not mix "
    "currencies. To pay in USD, create a new brand (ad platforms also make a change of "
    "currency a new account)."
)
AT_MOST_BUDGET = "Ensure this value is less than or equal to 9999999999.99."
NOT_A_ZONE = "is not a known IANA time zone (for example Europe/Paris or UTC)"
OFF_GRID = "is not on the 15-minute grid; use :00, :15, :30 or :45"

FORM_CASES = [
    FormCase("brand", "daily_budget", "-1", GE_ZERO),
    FormCase("brand", "daily_budget", "NaN", ENTER_A_NUMBER),
    FormCase("brand", "monthly_budget", "sNaN", ENTER_A_NUMBER),
    FormCase("brand", "daily_budget", "Infinity", ENTER_A_NUMBER),
    FormCase("brand", "daily_budget", "1.005", EUR_CENTS.format("1.005")),
    FormCase("brand", "monthly_budget", "10000000000", AT_MOST_BUDGET),
    FormCase("brand", "daily_budget", "1e309", AT_MOST_BUDGET),
    FormCase("brand", "daily_budget", "1,50", ENTER_A_NUMBER),
    FormCase("brand", "daily_budget", "", "This field is required."),
    FormCase("brand", "monthly_budget", "1; DROP TABLE ads_spendevent", ENTER_A_NUMBER),
    FormCase("brand", "timezone", "Europe/Atlantis", f"'Europe/Atlantis' {NOT_A_ZONE}"),
    FormCase("brand", "timezone", "+05:00", f"'+05:00' {NOT_A_ZONE}"),
    FormCase("brand", "timezone", "' OR 1=1 --", f'"\' OR 1=1 --" {NOT_A_ZONE}'),
    FormCase("brand", "timezone", "", "This field is required."),
    # The server's own zone, whatever it is on each machine: not a brand's IANA zone.
    FormCase("brand", "timezone", "localtime", f"'localtime' {NOT_A_ZONE}"),
    FormCase("brand", "campaigns-0-daily_budget", "-1", GE_ZERO),
    FormCase("brand", "campaigns-0-daily_budget", "0.005", EUR_CENTS.format("0.005")),
    FormCase("brand", "currency", "ABC", NOT_OFFERED.format("ABC")),
    FormCase("brand", "currency", "DEM", NOT_OFFERED.format("DEM")),  # retired in 2002
    FormCase("brand", "currency", "eur", NOT_OFFERED.format("eur")),  # a list's value, as sent
    FormCase("brand", "currency", "", "This field is required."),
    FormCase("brand", "currency", "' OR 1=1 --", NOT_OFFERED.format("' OR 1=1 --")),
    # Acme has spend in EUR: its ledger and budgets must not mix currencies.
    FormCase("brand", "currency", "USD", CURRENCY_FIXED),
    FormCase("campaign", "daily_budget", "-0.01", GE_ZERO),
    FormCase("campaign", "daily_budget", "NaN", ENTER_A_NUMBER),
    FormCase("campaign", "daily_budget", "0.001", EUR_CENTS.format("0.001")),
    FormCase("campaign", "daily_budget", "10000000000", AT_MOST_BUDGET),
    FormCase(
        "campaign",
        "schedule",
        "999999",
        "Select a valid choice. That choice is not one of the available choices.",
    ),
    FormCase("schedule", "windows-0-start", "09:10", f"Window 1: Start: 09:10 {OFF_GRID}"),
    FormCase("schedule", "windows-0-end", "17:05", f"Window 1: End: 17:05 {OFF_GRID}"),
    FormCase("schedule", "windows-0-start", "09:00:30", f"Window 1: Start: 09:00:30 {OFF_GRID}"),
    FormCase(
        "schedule", "windows-0-start", "09:00:00.5", f"Window 1: Start: 09:00:00.500000 {OFF_GRID}"
    ),
    FormCase("schedule", "windows-0-start", "24:00", "Window 1: Start: Enter a valid time."),
    FormCase("schedule", "windows-0-days", [], "Window 1: Weekdays: choose at least one weekday"),
    FormCase(
        "schedule",
        "windows-0-days",
        ["7"],
        "Window 1: Weekdays: Select a valid choice. 7 is not one of the available choices.",
    ),
    FormCase("schedule", "windows-0-DELETE", "on", "Please submit at least 1 form."),
]


def change_form(page: str, campaign: Campaign) -> tuple[str, dict[str, object]]:
    """The page's change URL and its form as a browser would post it unchanged."""
    brand, schedule = campaign.brand, campaign.schedule
    assert schedule is not None
    if page == "brand":
        return reverse("admin:ads_brand_change", args=[brand.pk]), {
            "name": brand.name, "timezone": brand.timezone, "currency": brand.currency,
            "is_active": "on",
            "contact_email": "", "daily_budget": str(brand.daily_budget),
            "monthly_budget": str(brand.monthly_budget),
            "campaigns-TOTAL_FORMS": "1", "campaigns-INITIAL_FORMS": "1",
            "campaigns-MIN_NUM_FORMS": "0", "campaigns-MAX_NUM_FORMS": "1000",
            "campaigns-0-id": str(campaign.pk), "campaigns-0-brand": str(brand.pk),
            "campaigns-0-name": campaign.name, "campaigns-0-is_enabled": "on",
            "campaigns-0-daily_budget": str(campaign.daily_budget),
            "campaigns-0-schedule": str(schedule.pk),
        }  # fmt: skip
    if page == "campaign":
        return reverse("admin:ads_campaign_change", args=[campaign.pk]), {
            "name": campaign.name, "is_enabled": "on",
            "daily_budget": str(campaign.daily_budget), "schedule": str(schedule.pk),
        }  # fmt: skip
    window = schedule.windows.get()
    return reverse("admin:ads_schedule_change", args=[schedule.pk]), {
        "name": schedule.name,
        "windows-TOTAL_FORMS": "1", "windows-INITIAL_FORMS": "1",
        "windows-MIN_NUM_FORMS": "1", "windows-MAX_NUM_FORMS": "1000",
        "windows-0-id": str(window.pk), "windows-0-schedule": str(schedule.pk),
        "windows-0-days": ["0", "1", "2", "3", "4"], "windows-0-start": "09:00",
        "windows-0-end": "17:00",
    }  # fmt: skip


def errors_shown(response: Any) -> dict[str, list[str]]:
    """The page's errors by field: the main form's, each inline row's
    (`campaigns-0-daily_budget`) and each inline table's own (`windows`)."""
    form = response.context["adminform"].form
    errors = {field: list(messages) for field, messages in form.errors.items()}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        if formset.non_form_errors():
            errors[formset.prefix] = list(formset.non_form_errors())
        for number, form in enumerate(formset.forms):
            for field, messages in form.errors.items():
                errors[f"{formset.prefix}-{number}-{field}"] = list(messages)
    return errors


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=case_id(f"{c.page}.{c.field}", c.value)) for c in FORM_CASES]
)
def test_admin_form_is_shown_again_with_the_error_on_its_field_and_saves_nothing(
    case: FormCase, admin_client: Client, campaign: Campaign
) -> None:
    url, form = change_form(case.page, campaign)

    with nothing_written():
        response = admin_client.post(url, {**form, case.field: case.value})

    assert response.status_code == 200
    shown_on = "windows" if case.field.startswith("windows-") else case.field
    assert case.reason in errors_shown(response).get(shown_on, []), errors_shown(response)
    page = response.content.decode()
    assert 'class="errornote"' in page
    assert escape(case.reason) in page


@pytest.mark.parametrize("page", ["brand", "campaign", "schedule"])
def test_the_admin_forms_the_bad_cases_start_from_save(
    page: str, admin_client: Client, campaign: Campaign
) -> None:
    url, form = change_form(page, campaign)

    response = admin_client.post(url, form)

    assert response.status_code == 302, errors_shown(response)


def test_the_table_holds_at_least_25_distinct_bad_inputs() -> None:
    spend = {(c.field, repr(c.value)) for c in SPEND_CASES}
    admin = {(c.page, c.field, repr(c.value)) for c in FORM_CASES}

    assert len(spend) == len(SPEND_CASES)
    assert len(admin) == len(FORM_CASES)
    assert len(spend) + len(admin) >= 25
