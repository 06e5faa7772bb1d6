"""record_spend_batch: many spends in one transaction, same guarantees (issue 6)."""

import logging
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from ads import tasks
from ads.models import Brand, Campaign, CampaignStatusChange, SpendEvent
from ads.services import SpendInput, record_spend, record_spend_batch
from tests.conftest import NOW
from tests.factories import BrandFactory, CampaignFactory

pytestmark = pytest.mark.django_db


def three_campaigns(name: str) -> list[int]:
    brand = BrandFactory.create(name=name, daily_budget=Decimal("60"), timezone="Asia/Tokyo")
    capped = CampaignFactory.create(brand=brand, daily_budget=Decimal("15"), evaluated_at=NOW)
    others = CampaignFactory.create_batch(2, brand=brand, evaluated_at=NOW)
    return [capped.pk, *(c.pk for c in others)]


def spends_for(campaigns: list[int], prefix: str) -> list[SpendInput]:
    """200 spends: amounts with cents and micros, some dated yesterday or last month."""
    return [
        SpendInput(
            campaign_id=campaigns[n % 3],
            amount=f"{(n % 7) * 0.13 + 0.01:.2f}" if n % 5 else "0.000123",
            occurred_at=(NOW - timedelta(days=1 if n % 11 == 0 else 40 if n % 13 == 0 else 0)),
            idempotency_key=f"{prefix}-{n}",
        )
        for n in range(200)
    ]


def outcome(campaigns: list[int]) -> tuple[object, ...]:
    brand = Campaign.objects.get(pk=campaigns[0]).brand
    return (
        brand.current_daily_spend,
        brand.current_monthly_spend,
        [
            (c.daily_spend, c.is_active, c.pause_reasons)
            for c in Campaign.objects.filter(pk__in=campaigns).order_by("pk")
        ],
        sorted(SpendEvent.objects.filter(brand=brand).values_list("amount", flat=True)),
    )


def test_a_batch_ends_where_recording_one_by_one_ends() -> None:
    one_by_one, batched = three_campaigns("One by one"), three_campaigns("Batched")
    for spend in spends_for(one_by_one, "a"):
        record_spend(
            spend.campaign_id, spend.amount, occurred_at=spend.occurred_at,
            idempotency_key=spend.idempotency_key, at=NOW,
        )  # fmt: skip

    result = record_spend_batch(spends_for(batched, "b"), at=NOW)

    assert result.recorded == 200
    assert outcome(batched) == outcome(one_by_one)
    assert not Campaign.objects.get(pk=batched[0]).is_active  # its own budget of 15


def test_a_batch_audits_each_state_change_once_not_once_per_spend() -> None:
    campaigns = three_campaigns("Audited")

    result = record_spend_batch(spends_for(campaigns, "k"), at=NOW)

    audited = list(
        CampaignStatusChange.objects.filter(actor="spend").values_list("campaign_id", flat=True)
    )
    assert audited == [campaigns[0]]  # the campaign over its own budget of 15, once
    assert [c.campaign_id for c in result.changes] == audited


def test_keys_repeated_within_and_across_batches_count_once() -> None:
    campaign = CampaignFactory.create()
    first = [SpendInput(campaign.pk, "1.00", idempotency_key="a"),
             SpendInput(campaign.pk, "1.00", idempotency_key="a")]  # fmt: skip
    second = [SpendInput(campaign.pk, "1.00", idempotency_key="a"),
              SpendInput(campaign.pk, "2.00", idempotency_key="b")]  # fmt: skip

    one = record_spend_batch(first, at=NOW)
    two = record_spend_batch(second, at=NOW)

    assert one.outcomes == ("recorded", "already_recorded")
    assert two.outcomes == ("already_recorded", "recorded")
    assert SpendEvent.objects.count() == 2
    assert Brand.objects.get().current_daily_spend == Decimal("3.00")


def test_bad_rows_are_named_by_number_and_nothing_of_the_batch_is_written() -> None:
    campaign = CampaignFactory.create()
    record_spend(campaign.pk, "5", idempotency_key="taken", at=NOW)
    batch = [
        SpendInput(campaign.pk, "1.00", idempotency_key="ok-1"),
        SpendInput(campaign.pk, "1.00", idempotency_key="ok-2"),
        SpendInput(campaign.pk, "-1", idempotency_key="bad-amount"),
        SpendInput(campaign.pk, "1.00", idempotency_key="ok-1x"),
        SpendInput(999_999, "1.00", idempotency_key="bad-campaign"),
        SpendInput(campaign.pk, "1.00", occurred_at="soon", idempotency_key="bad-date"),
        SpendInput(campaign.pk, "7.00", idempotency_key="ok-1"),
    ]

    with pytest.raises(ValidationError) as error:
        record_spend_batch(batch, at=NOW)

    assert error.value.message_dict["events"] == [
        "row 3: amount: must be greater than zero (got '-1')",
        "row 6: occurred_at: 'soon' is not an ISO-8601 date and time; "
        "write it like 2026-11-27T14:30:00+00:00",
        "row 7: idempotency_key: 'ok-1' is also row 1 with a different spend; "
        "use a new key for a new spend",
        "row 5: campaign_id: no campaign with id 999999",
    ]
    assert SpendEvent.objects.count() == 1
    assert Brand.objects.get().current_daily_spend == Decimal(5)


def test_a_key_already_used_for_another_spend_rejects_the_whole_batch() -> None:
    campaign = CampaignFactory.create()
    record_spend(campaign.pk, "5", idempotency_key="taken", at=NOW)

    with pytest.raises(ValidationError) as error:
        record_spend_batch(
            [SpendInput(campaign.pk, "1", idempotency_key="new"),
             SpendInput(campaign.pk, "6", idempotency_key="taken")],
            at=NOW,
        )  # fmt: skip

    assert error.value.message_dict["events"][0].startswith(
        "row 2: idempotency_key: 'taken' was already used for a different spend"
    )
    assert SpendEvent.objects.count() == 1


def test_batch_size_is_bounded() -> None:
    with pytest.raises(ValidationError, match="at most 10,000 spends per batch"):
        record_spend_batch([SpendInput(1, "1")] * 10_001, at=NOW)


def test_command_records_a_csv_file_and_names_bad_lines(
    tmp_path: Path, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to(NOW, tick=False)
    campaign = CampaignFactory.create()
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(
        "campaign_id,amount,occurred_at,idempotency_key\n"
        f"{campaign.pk},1.25,,feed-1\n{campaign.pk},2.50,2026-11-27T11:00:00+00:00,feed-2\n"
    )
    bad.write_text(f"campaign_id,amount\n{campaign.pk},1\n{campaign.pk},NaN\n")
    out = StringIO()

    call_command("simulate_spend", "--file", str(good), stdout=out)
    with pytest.raises(CommandError) as error:
        call_command("simulate_spend", "--file", str(bad))

    assert "2 spend(s) recorded, 0 already recorded" in out.getvalue()
    assert Brand.objects.get().current_daily_spend == Decimal("3.75")
    assert "line 3: amount: 'NaN' is not a finite amount" in str(error.value)
    assert SpendEvent.objects.count() == 2


def test_command_refuses_a_file_without_the_needed_columns(tmp_path: Path) -> None:
    file = tmp_path / "spend.csv"
    file.write_text("campaign,cost\n1,2\n")

    with pytest.raises(CommandError, match="needs the columns campaign_id and amount"):
        call_command("simulate_spend", "--file", str(file))


def test_batch_task_records_and_rejects_without_retrying(caplog: pytest.LogCaptureFixture) -> None:
    campaign = CampaignFactory.create()

    tasks.record_spend_batch(
        [{"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "t-1"}]
    )
    tasks.record_spend_batch([{"campaign_id": campaign.pk, "amount": "2"}])  # no key

    assert list(SpendEvent.objects.values_list("idempotency_key", flat=True)) == ["t-1"]
    assert "row 1: idempotency_key: required for a queued spend" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("campaign_id,amount\n{pk},12,50\n", "line 2: more cells than the header has columns"),
        ("campaign_id,amount\n\n{pk},abc\n", "line 3: amount: 'abc' is not a number"),
        (
            'campaign_id,amount,idempotency_key\n{pk},1,"two\nlines"\n{pk},x,k\n',
            "line 4: amount: 'x' is not a number",
        ),
    ],
)
def test_command_names_the_real_line_and_refuses_extra_cells(
    tmp_path: Path, content: str, message: str
) -> None:
    campaign = CampaignFactory.create()
    file = tmp_path / "spend.csv"
    file.write_text(content.format(pk=campaign.pk))

    with pytest.raises(CommandError) as error:
        call_command("simulate_spend", "--file", str(file))

    assert message in str(error.value)
    assert not SpendEvent.objects.exists()


@pytest.mark.parametrize("option", [["--at", "2026-11-27T10:00"], ["--currency", "EUR"]])
def test_command_refuses_single_spend_options_with_a_file(
    tmp_path: Path, option: list[str]
) -> None:
    file = tmp_path / "spend.csv"
    file.write_text("campaign_id,amount\n1,1\n")

    with pytest.raises(CommandError, match="--file takes everything from the file"):
        call_command("simulate_spend", "--file", str(file), *option)


# --- Currency: each row may state it; it must be its brand's -----------------------------

OTHER_CURRENCY = (
    "the spend is in {given} but brand '{brand}' pays in {currency}; nothing is converted, "
    "so send the amount in {currency}"
)


def books() -> tuple[object, ...]:
    """The ledger and every counter: what a refused batch must leave as it was."""
    return (
        list(SpendEvent.objects.order_by("pk").values_list("idempotency_key", "amount")),
        list(Brand.objects.order_by("pk").values_list(
            "current_daily_spend", "current_monthly_spend"
        )),
        list(Campaign.objects.order_by("pk").values_list("daily_spend", "is_active")),
        CampaignStatusChange.objects.count(),
    )  # fmt: skip


def test_a_batch_over_two_currencies_takes_each_row_in_its_brands_currency() -> None:
    paris = CampaignFactory.create(brand__currency="EUR", evaluated_at=NOW)
    tokyo = CampaignFactory.create(brand__currency="JPY", brand__daily_budget=10_000)

    result = record_spend_batch(
        [SpendInput(paris.pk, "12.50", currency="eur"),
         SpendInput(tokyo.pk, "1200", currency="JPY"),
         SpendInput(tokyo.pk, "300")],
        at=NOW,
    )  # fmt: skip

    assert result.recorded == 3
    assert [b.current_daily_spend for b in Brand.objects.order_by("pk")] == [
        Decimal("12.50"), Decimal(1500)
    ]  # fmt: skip


def test_a_row_in_another_currency_than_its_brands_refuses_the_batch_and_writes_nothing() -> None:
    paris = CampaignFactory.create(brand__name="Paris", brand__currency="EUR", evaluated_at=NOW)
    tokyo = CampaignFactory.create(brand__name="Tokyo", brand__currency="JPY", evaluated_at=NOW)
    record_spend(paris.pk, "1", at=NOW)
    before = books()

    with pytest.raises(ValidationError) as error:
        record_spend_batch(
            [SpendInput(paris.pk, "12.50", currency="EUR"),
             SpendInput(tokyo.pk, "1200", currency="JPY"),
             SpendInput(tokyo.pk, "12.50", currency="EUR")],
            at=NOW,
        )  # fmt: skip

    assert error.value.message_dict["events"] == [
        "row 3: currency: " + OTHER_CURRENCY.format(given="EUR", brand="Tokyo", currency="JPY")
    ]
    assert books() == before


def test_command_reads_each_lines_currency_and_an_empty_cell_states_none(
    tmp_path: Path, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to(NOW, tick=False)
    campaign = CampaignFactory.create(brand__currency="JPY", brand__daily_budget=10_000)
    file = tmp_path / "spend.csv"
    file.write_text(
        "campaign_id,amount,currency,idempotency_key\n"
        f"{campaign.pk},1200,jpy,f-1\n{campaign.pk},300,,f-2\n{campaign.pk},0.5,JPY,f-3\n"
    )
    out = StringIO()

    call_command("simulate_spend", "--file", str(file), stdout=out)

    assert "3 spend(s) recorded, 0 already recorded" in out.getvalue()
    assert Brand.objects.get().current_daily_spend == Decimal("1500.5")


def test_command_refuses_a_file_with_a_line_in_another_currency_and_records_none(
    tmp_path: Path, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to(NOW, tick=False)
    campaign = CampaignFactory.create(
        brand__name="Tokyo", brand__currency="JPY", brand__daily_budget=10_000, evaluated_at=NOW
    )
    file = tmp_path / "spend.csv"
    file.write_text(
        f"campaign_id,amount,currency\n{campaign.pk},1200,JPY\n{campaign.pk},12.50,EUR\n"
    )
    before = books()

    with pytest.raises(CommandError) as error:
        call_command("simulate_spend", "--file", str(file), stdout=StringIO())

    assert str(error.value) == (
        f"{file}: nothing was recorded, because of these lines:\n"
        "  line 3: currency: " + OTHER_CURRENCY.format(given="EUR", brand="Tokyo", currency="JPY")
    )
    assert error.value.returncode == 1
    assert books() == before


def test_batch_task_refuses_a_row_in_another_currency_and_records_none(
    caplog: pytest.LogCaptureFixture, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to(NOW, tick=False)
    campaign = CampaignFactory.create(brand__name="Acme", evaluated_at=NOW)
    stated_eur = {"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "t-1"}
    stated_gbp = {"campaign_id": campaign.pk, "amount": "2", "idempotency_key": "t-2"}
    before = books()

    tasks.record_spend_batch([{**stated_eur, "currency": "eur"}, {**stated_gbp, "currency": "GBP"}])

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "record_spend_batch rejected, not retried: events: row 2: currency: "
        + OTHER_CURRENCY.format(given="GBP", brand="Acme", currency="EUR")
    ]
    assert books() == before
    tasks.record_spend_batch([{**stated_eur, "currency": "eur"}])
    assert list(SpendEvent.objects.values_list("idempotency_key", flat=True)) == ["t-1"]
