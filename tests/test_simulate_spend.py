"""The simulate_spend command: what it prints, and bad input (SPEC 9, 11)."""

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from pytest_django import DjangoCaptureOnCommitCallbacks

from ads import tasks
from ads.models import Brand, Campaign, CampaignStatusChange, PendingSpend, SpendEvent
from tests.conftest import NOW
from tests.factories import CampaignFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


def simulate(*args: str) -> str:
    out = StringIO()
    call_command("simulate_spend", *args, stdout=out)
    return out.getvalue()


def test_prints_the_spend_the_totals_and_budget_left(campaign: Campaign) -> None:
    out = simulate(str(campaign.pk), "2.50", "--key", "order-7")

    event = SpendEvent.objects.get()
    assert f'Recorded spend #{event.pk}: €2.50 on campaign {campaign.pk} "Search"' in out
    assert "key order-7" in out
    assert 'Campaign "Search": €2.50 today (no own budget); running' in out
    assert 'Brand "Acme": today €2.50 of €10.00 (€7.50 left)' in out
    assert "No campaign changed state." in out


def test_lists_every_campaign_whose_state_changed(campaign: Campaign) -> None:
    sibling = CampaignFactory.create(brand=campaign.brand, name="Display", evaluated_at=NOW)

    out = simulate(str(campaign.pk), "10")

    assert "Campaigns whose state changed:" in out
    # In the words of the admin's lists, not the API's codes.
    assert f'campaign {campaign.pk} "Search": Paused: Brand daily budget exhausted' in out
    assert f'campaign {sibling.pk} "Display": Paused: Brand daily budget exhausted' in out


def test_says_when_the_campaign_was_not_running(campaign: Campaign) -> None:
    simulate(str(campaign.pk), "10")

    out = simulate(str(campaign.pk), "1")

    assert "was not running when this spend arrived (brand daily budget exhausted)" in out
    assert "today €11.00 of €10.00 (€1.00 over)" in out


def test_duplicate_key_says_already_recorded_and_changes_nothing(campaign: Campaign) -> None:
    simulate(str(campaign.pk), "1", "--key", "k-1")

    out = simulate(str(campaign.pk), "1", "--key", "k-1")

    assert out.startswith(f"Already recorded as spend #{SpendEvent.objects.get().pk}")
    assert "Nothing changed." in out
    assert SpendEvent.objects.count() == 1


def test_spend_past_a_budget_says_how_much_over(campaign: Campaign) -> None:
    Campaign.objects.update(daily_budget=Decimal("4.00"))

    out = simulate(str(campaign.pk), "5.50")

    assert 'Campaign "Search": €5.50 today (own daily budget €4.00, €1.50 over)' in out
    assert 'Brand "Acme": today €5.50 of €10.00 (€4.50 left)' in out


def test_already_recorded_after_local_midnight_shows_the_new_day(
    campaign: Campaign, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to("2026-11-27T23:00:00+00:00", tick=False)
    simulate(str(campaign.pk), "7.00", "--key", "k-1")
    time_machine.move_to("2026-11-28T00:30:00+00:00", tick=False)  # before any reset task

    out = simulate(str(campaign.pk), "7.00", "--key", "k-1")

    assert out.startswith("Already recorded as spend #")
    assert 'Campaign "Search": €0.00 today (no own budget); running' in out
    assert 'Brand "Acme": today €0.00 of €10.00 (€10.00 left); this month €7.00 of' in out
    assert SpendEvent.objects.count() == 1


def test_at_option_dates_the_spend(campaign: Campaign) -> None:
    out = simulate(str(campaign.pk), "1", "--at", "2026-11-26T23:00:00+00:00")

    assert "counted in the ledger and in this month's total, not in today's" in out
    assert str(SpendEvent.objects.get().occurred_at) == "2026-11-26 23:00:00+00:00"


OTHER_CURRENCY = (
    "--currency: the spend is in USD but brand 'Acme' pays in EUR; nothing is converted, so "
    "send the amount in EUR"
)


def books() -> tuple[object, ...]:
    """What a refused spend must leave as it was: the ledger, the counters, the campaigns'
    states and their history, and the outbox of queued spends."""
    return (
        list(SpendEvent.objects.order_by("pk").values_list("idempotency_key", "amount")),
        list(Brand.objects.values_list("current_daily_spend", "current_monthly_spend")),
        list(Campaign.objects.values_list("daily_spend", "is_active", "pause_reasons")),
        CampaignStatusChange.objects.count(),
        PendingSpend.objects.count(),
    )


@pytest.mark.parametrize("code", ["EUR", "eur"])
def test_a_spend_stating_the_brands_currency_is_recorded(campaign: Campaign, code: str) -> None:
    out = simulate(str(campaign.pk), "2.50", "--currency", code, "--key", "order-7")

    assert f"Recorded spend #{SpendEvent.objects.get().pk}: €2.50 on campaign" in out
    assert Brand.objects.get().current_daily_spend == Decimal("2.50")


def test_a_spend_in_another_currency_is_refused_in_one_line_and_writes_nothing(
    campaign: Campaign,
) -> None:
    simulate(str(campaign.pk), "2.50")  # spend on the books, for the refusal to disturb
    before = books()

    with pytest.raises(CommandError) as error:
        simulate(str(campaign.pk), "2.50", "--currency", "usd")

    assert str(error.value) == OTHER_CURRENCY
    assert error.value.returncode == 1
    assert books() == before


def test_a_spend_in_another_currency_exits_with_status_one(campaign: Campaign) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call_command_from_argv(["simulate_spend", str(campaign.pk), "1", "--currency", "USD"])

    assert exit_info.value.code == 1


def test_queue_hands_the_stated_currency_to_the_worker(
    campaign: Campaign, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks() as queued:
        out = simulate(str(campaign.pk), "2.50", "--queue", "--currency", "eur", "--key", "q-1")

    assert out.startswith(f"Queued spend of €2.50 on campaign {campaign.pk} with key q-1;")
    [hand_over] = queued
    arguments = hand_over.args[0]  # type: ignore[attr-defined]  # a functools.partial
    assert arguments["currency"] == PendingSpend.objects.get().arguments["currency"] == "EUR"
    tasks.record_spend(**arguments)
    assert SpendEvent.objects.get().source == "task"
    assert not PendingSpend.objects.exists()


def test_queue_refuses_a_spend_in_another_currency_and_queues_nothing(
    campaign: Campaign, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    before = books()

    with django_capture_on_commit_callbacks() as queued, pytest.raises(CommandError) as error:
        simulate(str(campaign.pk), "2.50", "--queue", "--currency", "USD")

    assert str(error.value) == OTHER_CURRENCY
    assert queued == []
    assert books() == before


def bad(option: str, value: str, says: str, id: str) -> Any:
    """A call with `value` for `option` (campaign_id, amount, --at or --key), the rest
    good, refused with "<option>: <says>"; `{}` in `says` stands for `value`."""
    args = {"campaign_id": [value, "1"], "amount": ["{pk}", value]}
    call = args.get(option, ["{pk}", "1", option, value])
    return pytest.param(call, f"{option}: " + says.format(value), id=id)


BAD_INPUT = [
    bad("campaign_id", "999999", "no campaign with id {}", "unknown"),
    bad("amount", "0", "must be greater than zero (got '{}')", "zero"),
    bad("amount", "-5", "must be greater than zero (got '{}')", "negative"),
    bad("amount", "-0", "must be greater than zero (got '{}')", "minus-zero"),
    bad("amount", "abc", "'{}' is not a number", "abc"),
    bad("amount", "NaN", "'{}' is not a finite amount", "nan"),
    bad("amount", "sNaN", "'{}' is not a finite amount", "snan"),
    bad("amount", "inf", "'{}' is not a finite amount", "inf"),
    bad("amount", "1e400", "must be at most 999,999,999.999999", "1e400"),
    bad("amount", "0.1234567", "may have at most 6 decimal places", "7-places"),
    bad("amount", "1000000000", "must be at most 999,999,999.999999", "past-range"),
    bad("amount", "1,50", "'{}' is not a number", "comma"),
    bad("amount", "", "'{}' is not a number", "empty"),
    bad("campaign_id", "x1", "'{}' is not a campaign id", "id-not-a-number"),
    bad("campaign_id", "-3", "'{}' is not a campaign id", "id-negative"),
    bad("campaign_id", "99999999999999999999", "'{}' is not", "id-huge"),
    bad(
        "--at", "2026-11-27T12:05:01+00:00", "{} is more than 5 minutes in the future", "at-future"
    ),
    bad("--at", "next tuesday", "'{}' is not an ISO-8601 date and time", "at-not-a-date"),
    bad("--key", " padded ", "must be 1 to 255", "key-spaces"),
    bad("--at", "0001-01-01T00:00:00+01:00", "{} is more than 400 days in the past", "at-year-one"),
    bad("--at", "1066-10-14T09:00", "{}:00+00:00 is more than 400 days in the past", "at-long-ago"),
    bad("--currency", "USD", "the spend is in USD but brand 'Acme' pays in EUR", "currency-other"),
    bad("--currency", "EURO", "'{}' is not an ISO 4217 currency code", "currency-not-a-code"),
    bad("--currency", "€", "'{}' is not an ISO 4217 currency code", "currency-symbol"),
    # Given empty, not left out: a mistake (a script's unset variable), not "the brand's".
    bad("--currency", "", "'{}' is not an ISO 4217 currency code", "currency-empty"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    campaign: Campaign, args: list[str], message: str
) -> None:
    audit_rows = CampaignStatusChange.objects.count()

    with pytest.raises(CommandError) as error:
        simulate(*(a.format(pk=campaign.pk) for a in args))

    assert message in str(error.value)
    assert "\n" not in str(error.value)
    assert not SpendEvent.objects.exists()
    brand = Brand.objects.get()
    assert (brand.current_daily_spend, brand.current_monthly_spend) == (Decimal(0), Decimal(0))
    assert Campaign.objects.get().daily_spend == 0
    assert CampaignStatusChange.objects.count() == audit_rows


def test_bad_input_exits_with_status_one(campaign: Campaign) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call_command_from_argv(["simulate_spend", str(campaign.pk), "abc"])

    assert exit_info.value.code == 1


def call_command_from_argv(argv: list[str]) -> None:
    from django.core.management import ManagementUtility

    ManagementUtility(["manage.py", *argv]).execute()
