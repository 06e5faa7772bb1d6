"""Turn untrusted input (CLI strings, task JSON, form data) into typed values.

Every failure is a `ValidationError` keyed by the field's name, with one of the
message constants below, so each interface can say which field is wrong and why.
"""

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from babel.numbers import list_currencies
from django.core.exceptions import ValidationError

from ads.money import MAX_SPEND, MICRO, SPEND_DECIMAL_PLACES, format_amount

# The limits every interface applies; the messages below and the API's schema are
# written from these, so a limit changes in one place.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Late reports are normal; a spend over a year old is a typo, and no budget period
# it could count in is still open.
PAST_LIMIT = timedelta(days=400)
MAX_ID = 2**63 - 1
MAX_KEY_LENGTH = 255

FUTURE_TOLERANCE_TEXT = f"{FUTURE_TOLERANCE // timedelta(minutes=1)} minutes"
PAST_LIMIT_TEXT = f"{PAST_LIMIT.days} days"

AMOUNT_WRONG_TYPE = "must be a decimal number written as text (such as '12.50'), not {kind}"
AMOUNT_NOT_A_NUMBER = "{value} is not a number; write it like 12.50"
AMOUNT_NOT_FINITE = "{value} is not a finite amount"
AMOUNT_NOT_POSITIVE = "must be greater than zero (got {value})"
AMOUNT_TOO_LARGE = "must be at most {limit} (got {value})"
AMOUNT_TOO_PRECISE = f"may have at most {SPEND_DECIMAL_PLACES} decimal places " + "(got {value})"
CAMPAIGN_ID_INVALID = "{value} is not a campaign id; give a positive whole number"
CAMPAIGN_UNKNOWN = "no campaign with id {value}"
OCCURRED_AT_DATE_ONLY = (
    "{value} is a date without a time; give the time and its offset, like "
    "2026-11-27T14:30:00+00:00 (a day means midnight to midnight in the brand's zone, "
    "which a date alone cannot say)"
)
OCCURRED_AT_INVALID = (
    "{value} is not an ISO-8601 date and time; write it like 2026-11-27T14:30:00+00:00"
)
OCCURRED_AT_FUTURE = "{value} is more than " + f"{FUTURE_TOLERANCE_TEXT} in the future"
OCCURRED_AT_PAST = "{value} is more than " + f"{PAST_LIMIT_TEXT} in the past"
# How the API's schema describes a stated currency: three letters, in any case.
CURRENCY_CODE_PATTERN = r"^[A-Za-z]{3}$"
CURRENCY_INVALID = "{value} is not an ISO 4217 currency code; write it like EUR, USD or JPY"
CURRENCY_MISMATCH = (
    "the spend is in {given} but brand '{brand}' pays in {currency}; nothing is converted, "
    "so send the amount in {currency}"
)
KEY_INVALID = f"must be 1 to {MAX_KEY_LENGTH} printable characters without spaces at either end"
KEY_CONFLICT = (
    "{key} was already used for a different spend (campaign {campaign_id}, amount {amount}); "
    "use a new key for a new spend"
)
# The event feed (ads.selectors.event_feed): events per page, and its cursors, which
# are URL-safe base64 text well under this length.
EVENT_PAGE_DEFAULT = 100
EVENT_PAGE_MAX = 500
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_CURSOR_LENGTH = 64
CURSOR_INVALID = (
    "{value} is not a cursor of this feed; pass a next_cursor it gave unchanged, or leave "
    "after out to start from the beginning"
)
EVENT_TYPE_UNKNOWN = "{value} is not an event type; give one of {types}, once per type="


class SpendConflict(ValidationError):
    """An idempotency key reused for a different spend: nothing wrong with the input as
    such, it disagrees with what is recorded (HTTP 409, not 422)."""


def shown(value: object) -> str:
    """The offending value, quoted and cut short enough for a one-line error."""
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 40 else text[:37] + "...'"


def invalid(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def parse_amount(value: object, *, field: str = "amount") -> Decimal:
    """A spend amount: finite, > 0, at most SPEND_DECIMAL_PLACES places, at most MAX_SPEND."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise invalid(field, AMOUNT_WRONG_TYPE.format(kind=type(value).__name__))
    if isinstance(value, str) and (not value.isascii() or "_" in value):
        # Decimal() reads "1_000" and non-ASCII digits; an amount should be plain.
        raise invalid(field, AMOUNT_NOT_A_NUMBER.format(value=shown(value)))
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise invalid(field, AMOUNT_NOT_A_NUMBER.format(value=shown(value))) from None
    if not amount.is_finite():
        raise invalid(field, AMOUNT_NOT_FINITE.format(value=shown(value)))
    if amount <= 0:
        raise invalid(field, AMOUNT_NOT_POSITIVE.format(value=shown(value)))
    if amount > MAX_SPEND:
        raise invalid(
            field, AMOUNT_TOO_LARGE.format(limit=format_amount(MAX_SPEND), value=shown(value))
        )
    if amount != amount.quantize(MICRO):
        raise invalid(field, AMOUNT_TOO_PRECISE.format(value=shown(value)))
    return amount


def parse_currency(value: object, *, field: str = "currency") -> str | None:
    """The currency a spend says it is in (None: not said; a CSV's empty cell is None
    before it gets here, but an empty --currency or "" is a mistake): an ISO 4217 code,
    in any case (eur is EUR). Whether it is the brand's is checked when the brand is
    locked."""
    if value is None:
        return None
    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or not (len(code) == 3 and code.isascii() and code in list_currencies()):
        raise invalid(field, CURRENCY_INVALID.format(value=shown(value)))
    return code


def parse_id(value: object, *, field: str = "campaign_id") -> int:
    """A positive database id, from an int or a string of digits."""
    number = value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= MAX_ID:
        raise invalid(field, CAMPAIGN_ID_INVALID.format(value=shown(value)))
    return number


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)  # also 20261127 and 2026-W48-5
    except ValueError:
        return False
    return True


def parse_occurred_at(value: object, *, at: datetime, field: str = "occurred_at") -> datetime:
    """When a spend happened: `at` when not given; a time without offset is UTC."""
    if value is None:
        return at
    if isinstance(value, str):
        if _is_date(value.strip()):
            # A date alone would be read as UTC midnight: in New York that is the evening
            # before, possibly in the previous month.
            raise invalid(field, OCCURRED_AT_DATE_ONLY.format(value=shown(value)))
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise invalid(field, OCCURRED_AT_INVALID.format(value=shown(value))) from None
    if not isinstance(value, datetime):
        raise invalid(field, OCCURRED_AT_INVALID.format(value=shown(value)))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        too_old = value < at - PAST_LIMIT
    except OverflowError:  # offsets near year 1 cannot be compared
        too_old = True
    if too_old:
        raise invalid(field, OCCURRED_AT_PAST.format(value=value.isoformat()))
    if value > at + FUTURE_TOLERANCE:
        raise invalid(field, OCCURRED_AT_FUTURE.format(value=value.isoformat()))
    return value


def parse_idempotency_key(value: object, *, field: str = "idempotency_key") -> str:
    """The caller's key, or a new random one when none is given."""
    if value is None:
        return uuid.uuid4().hex
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_KEY_LENGTH
        or not value.isprintable()
        or value != value.strip()
    ):
        raise invalid(field, KEY_INVALID)
    return value


def describe(error: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """One line naming each field and its reason: 'amount: must be greater than zero'.

    `names` renames fields to what the interface calls them (occurred_at -> --at).
    """
    if hasattr(error, "error_dict"):
        names = names or {}
        return "; ".join(
            f"{names.get(field, field)}: {' '.join(messages)}"
            for field, messages in error.message_dict.items()
        )
    return " ".join(error.messages)
