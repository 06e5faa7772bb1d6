"""Input parsing shared by every interface (SPEC 2, 11): typed values or a named error."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from ads.validation import (
    describe,
    parse_amount,
    parse_id,
    parse_idempotency_key,
    parse_occurred_at,
)
from tests.conftest import NOW


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.10", Decimal("0.10")),
        (" 12.5 ", Decimal("12.5")),
        ("0.000001", Decimal("0.000001")),
        ("1.0000000", Decimal("1")),  # exactly representable: trailing zeros are harmless
        (Decimal("999999999.999999"), Decimal("999999999.999999")),
        (7, Decimal(7)),
    ],
)
def test_parse_amount_accepts_exact_positive_amounts(raw: object, expected: Decimal) -> None:
    assert parse_amount(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (0.1, "not float"),  # floats are never money
        (True, "not bool"),
        (None, "not NoneType"),
        ([], "not list"),
        ("Infinity", "not a finite amount"),
        ("-inf", "not a finite amount"),
        ("1e309", "must be at most"),
        ("0E-7", "must be greater than zero"),
        ("1e-7", "may have at most 6 decimal places"),
        ("0x10", "is not a number"),
        ("1_000", "is not a number"),
        ("١٢", "is not a number"),
    ],
)
def test_parse_amount_rejects_with_the_reason(raw: object, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_amount(raw)

    assert message in error.value.message_dict["amount"][0]


@pytest.mark.parametrize("raw", ["12", 12, " 7 "])
def test_parse_id_accepts_positive_whole_numbers(raw: object) -> None:
    assert parse_id(raw) in {7, 12}


@pytest.mark.parametrize("raw", [0, -1, True, 1.0, "1.0", "", "١٢", 2**63, None, "1; DROP TABLE"])
def test_parse_id_rejects_anything_else(raw: object) -> None:
    with pytest.raises(ValidationError) as error:
        parse_id(raw)

    assert "is not a campaign id" in error.value.message_dict["campaign_id"][0]


def test_occurred_at_defaults_to_now_and_reads_naive_times_as_utc() -> None:
    assert parse_occurred_at(None, at=NOW) == NOW
    assert parse_occurred_at("2026-11-27T10:00", at=NOW) == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert parse_occurred_at("2026-11-27T10:00Z", at=NOW) == datetime(2026, 11, 27, 10, tzinfo=UTC)


def test_occurred_at_rejects_non_dates() -> None:
    with pytest.raises(ValidationError):
        parse_occurred_at(12345, at=NOW)
    with pytest.raises(ValidationError):
        parse_occurred_at(NOW + timedelta(minutes=6), at=NOW)


def test_idempotency_key_is_generated_or_validated() -> None:
    assert len(parse_idempotency_key(None)) == 32
    assert parse_idempotency_key("order-1") == "order-1"
    for bad in ["", "x" * 256, "tab\there", 5]:
        with pytest.raises(ValidationError):
            parse_idempotency_key(bad)


def test_describe_names_each_field_in_one_line() -> None:
    error = ValidationError({"amount": ["must be greater than zero"], "occurred_at": ["bad"]})

    assert describe(error, {"occurred_at": "--at"}) == (
        "amount: must be greater than zero; --at: bad"
    )
