"""record_spend: the ledger, the counters and immediate enforcement (SPEC 2, 4, 5)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection

from ads.models import Brand, Campaign, CampaignStatusChange, SpendEvent, SpendSource
from ads.rules import PauseReason
from ads.services import record_spend, refresh_campaign_states, set_campaigns_enabled
from tests.conftest import NOW
from tests.factories import BrandFactory, CampaignFactory

pytestmark = pytest.mark.django_db


def ledger_total(brand: Brand) -> Decimal:
    return sum((e.amount for e in SpendEvent.objects.filter(brand=brand)), Decimal(0))


# SPEC 2's reference case, in each kind of currency: cents, no minor unit (a spend may
# still be a fraction of a yen: platforms report micros), and three places (fils).
REFERENCE_CASES = {
    "EUR cents": ("EUR", "100.00", "0.10"),
    "JPY whole yen": ("JPY", "1000", "1"),
    "JPY tenths of a yen": ("JPY", "100", "0.10"),
    "KWD fils": ("KWD", "1.000", "0.001"),
}


@pytest.mark.parametrize(
    ("currency", "budget", "spend"), REFERENCE_CASES.values(), ids=REFERENCE_CASES.keys()
)
def test_reference_case_pauses_on_the_thousandth_spend_in_each_currency(
    currency: str, budget: str, spend: str
) -> None:
    campaign = CampaignFactory.create(
        brand__currency=currency, brand__daily_budget=Decimal(budget), evaluated_at=NOW
    )

    for n in range(1, 1000):
        result = record_spend(campaign.pk, spend, currency=currency, at=NOW)
        assert result.campaign.is_active, f"paused early, at spend {n}"
    assert result.brand.daily_spend == Decimal(budget) - Decimal(spend)

    result = record_spend(campaign.pk, spend, currency=currency, at=NOW)

    assert not result.campaign.is_active
    assert result.campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)
    brand = Brand.objects.get()
    assert brand.current_daily_spend == Decimal(budget) == ledger_total(brand)
    assert brand.current_monthly_spend == Decimal(budget)


def test_spends_of_ten_and_seventy_cents_exhaust_a_budget_of_eighty() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("0.80"), evaluated_at=NOW)

    assert record_spend(campaign.pk, "0.10", at=NOW).campaign.is_active
    result = record_spend(campaign.pk, "0.70", at=NOW)

    assert not result.campaign.is_active
    assert result.brand.daily_spend == Decimal("0.80")


def test_spend_pauses_every_campaign_of_the_brand_and_reports_each_change() -> None:
    brand = BrandFactory.create(daily_budget=Decimal("5.00"))
    spender = CampaignFactory.create(brand=brand, evaluated_at=NOW)
    sibling = CampaignFactory.create(brand=brand, evaluated_at=NOW)
    other_brand_campaign = CampaignFactory.create(evaluated_at=NOW)

    result = record_spend(spender.pk, "5", at=NOW)

    assert {c.campaign_id for c in result.changes} == {spender.pk, sibling.pk}
    assert not Campaign.objects.get(pk=sibling.pk).is_active
    assert Campaign.objects.get(pk=other_brand_campaign.pk).is_active


def test_campaign_daily_budget_pauses_only_that_campaign() -> None:
    brand = BrandFactory.create()
    capped = CampaignFactory.create(brand=brand, daily_budget=Decimal("1.00"), evaluated_at=NOW)
    uncapped = CampaignFactory.create(brand=brand, evaluated_at=NOW)

    result = record_spend(capped.pk, "1.00", at=NOW)

    assert result.campaign.pause_reasons == (PauseReason.CAMPAIGN_DAILY_BUDGET,)
    assert Campaign.objects.get(pk=uncapped.pk).is_active


def test_budget_of_zero_allows_nothing() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("0"))

    refresh_campaign_states(at=NOW, actor="test")

    campaign.refresh_from_db()
    assert not campaign.is_active
    assert campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)


def test_monthly_budget_pauses_when_reached() -> None:
    campaign = CampaignFactory.create(brand__monthly_budget=Decimal("50.00"))

    result = record_spend(campaign.pk, "50.00", at=NOW)

    assert result.campaign.pause_reasons == (PauseReason.BRAND_MONTHLY_BUDGET,)


def test_pause_reasons_list_every_failing_rule() -> None:
    campaign = CampaignFactory.create(
        brand__daily_budget=Decimal("1.00"),
        brand__monthly_budget=Decimal("1.00"),
        daily_budget=Decimal("1.00"),
        is_enabled=False,
    )
    Brand.objects.update(is_active=False)

    result = record_spend(campaign.pk, "1.00", at=NOW)

    assert result.campaign.pause_reasons == (
        PauseReason.DISABLED,
        PauseReason.BRAND_INACTIVE,
        PauseReason.BRAND_MONTHLY_BUDGET,
        PauseReason.BRAND_DAILY_BUDGET,
        PauseReason.CAMPAIGN_DAILY_BUDGET,
    )


def test_spend_on_a_paused_campaign_is_still_recorded_and_counted() -> None:
    campaign = CampaignFactory.create(is_enabled=False, evaluated_at=NOW)

    result = record_spend(campaign.pk, "2.50", at=NOW)

    assert result.created
    assert not result.campaign.was_active
    assert result.brand.daily_spend == Decimal("2.50")
    assert SpendEvent.objects.count() == 1


def test_disabled_campaign_stays_inactive_through_enforcement_and_budget_raise() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("1.00"), evaluated_at=NOW)
    set_campaigns_enabled([campaign.pk], enabled=False, actor="alice", at=NOW)
    record_spend(campaign.pk, "1.00", at=NOW)

    Brand.objects.update(daily_budget=Decimal("1000.00"))
    refresh_campaign_states(at=NOW + timedelta(minutes=5), actor="enforce_budget_limits")
    refresh_campaign_states(at=NOW + timedelta(days=1), actor="reset_daily_budgets")

    campaign.refresh_from_db()
    assert not campaign.is_active
    assert campaign.pause_reasons == (PauseReason.DISABLED,)


def test_each_state_change_has_exactly_one_audit_row_with_actor_and_reasons() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("1.00"))
    refresh_campaign_states(at=NOW, actor="enforce_budget_limits")
    record_spend(campaign.pk, "0.50", at=NOW)  # no change
    record_spend(campaign.pk, "0.50", at=NOW)  # pauses
    set_campaigns_enabled([campaign.pk], enabled=False, actor="alice", at=NOW)
    refresh_campaign_states(at=NOW, actor="enforce_budget_limits")  # no change

    rows = list(CampaignStatusChange.objects.order_by("pk"))

    assert [(r.actor, r.old_is_active, r.new_is_active, r.new_pause_reasons) for r in rows] == [
        ("enforce_budget_limits", False, True, ()),
        ("spend", True, False, (PauseReason.BRAND_DAILY_BUDGET,)),
        ("alice", False, False, (PauseReason.DISABLED, PauseReason.BRAND_DAILY_BUDGET)),
    ]
    assert rows[1].reason == "paused (+brand_daily_budget)"
    assert rows[2].old_pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)
    assert rows[2].changed_at == NOW


def test_same_idempotency_key_records_once_and_says_so() -> None:
    campaign = CampaignFactory.create()

    first = record_spend(campaign.pk, "3.00", idempotency_key="order-1", at=NOW)
    second = record_spend(campaign.pk, "3.00", idempotency_key="order-1", at=NOW)

    assert first.created
    assert not second.created
    assert second.event.pk == first.event.pk
    assert SpendEvent.objects.count() == 1
    assert Brand.objects.get().current_daily_spend == Decimal("3.00")


def test_same_key_after_local_midnight_answers_with_the_new_days_figures() -> None:
    campaign = CampaignFactory.create(
        brand__timezone="Asia/Tokyo", brand__daily_budget=Decimal(10), daily_budget=Decimal(5)
    )
    late = NOW.replace(hour=14)  # 23:00 in Tokyo
    record_spend(campaign.pk, "7.00", idempotency_key="order-1", at=late)

    again = record_spend(campaign.pk, "7.00", idempotency_key="order-1", at=late.replace(hour=16))

    assert not again.created
    assert (again.brand.day, again.brand.daily_spend, again.brand.monthly_spend) == (
        NOW.date() + timedelta(days=1), Decimal(0), Decimal(7)
    )  # fmt: skip
    assert (again.campaign.daily_spend, again.campaign.is_active) == (Decimal(0), True)
    assert [c.transition for c in again.changes] == ["resumed (-campaign_daily_budget)"]
    assert SpendEvent.objects.count() == 1


def test_same_key_with_a_different_amount_is_a_conflict_and_changes_nothing() -> None:
    campaign = CampaignFactory.create()
    record_spend(campaign.pk, "3.00", idempotency_key="order-1", at=NOW)

    with pytest.raises(ValidationError) as error:
        record_spend(campaign.pk, "4.00", idempotency_key="order-1", at=NOW)

    assert "already used for a different spend" in error.value.message_dict["idempotency_key"][0]
    assert Brand.objects.get().current_daily_spend == Decimal("3.00")


def test_generated_keys_are_unique() -> None:
    campaign = CampaignFactory.create()

    record_spend(campaign.pk, "1", at=NOW)
    record_spend(campaign.pk, "1", at=NOW)

    assert SpendEvent.objects.values("idempotency_key").distinct().count() == 2


def test_ledger_row_keeps_what_when_and_where_from() -> None:
    campaign = CampaignFactory.create()
    occurred = NOW - timedelta(hours=2)

    record_spend(
        campaign.pk,
        "0.123456",
        occurred_at=occurred,
        source=SpendSource.TASK,
        at=NOW,
        idempotency_key="k",
    )

    event = SpendEvent.objects.get()
    assert (event.campaign_id, event.brand_id, event.amount) == (
        campaign.pk,
        campaign.brand_id,
        Decimal("0.123456"),
    )
    assert (event.occurred_at, event.recorded_at, event.source) == (occurred, NOW, "task")


def test_spend_dated_yesterday_counts_in_month_but_not_today() -> None:
    campaign = CampaignFactory.create()

    result = record_spend(campaign.pk, "7.00", occurred_at=NOW - timedelta(days=1), at=NOW)

    assert not result.counted_today
    assert result.counted_this_month
    brand = Brand.objects.get()
    assert (brand.current_daily_spend, brand.current_monthly_spend) == (Decimal(0), Decimal("7.00"))
    assert Campaign.objects.get().daily_spend == 0


def test_spend_dated_last_month_counts_only_in_the_ledger() -> None:
    campaign = CampaignFactory.create()

    result = record_spend(campaign.pk, "7.00", occurred_at=NOW - timedelta(days=40), at=NOW)

    assert not result.counted_today
    assert not result.counted_this_month
    brand = Brand.objects.get()
    assert (brand.current_daily_spend, brand.current_monthly_spend) == (Decimal(0), Decimal(0))
    assert ledger_total(brand) == Decimal("7.00")


def test_spend_up_to_five_minutes_ahead_is_accepted_later_is_rejected() -> None:
    campaign = CampaignFactory.create()

    record_spend(campaign.pk, "1", occurred_at=NOW + timedelta(minutes=5), at=NOW)
    with pytest.raises(ValidationError) as error:
        record_spend(campaign.pk, "1", occurred_at=NOW + timedelta(minutes=5, seconds=1), at=NOW)

    assert "more than 5 minutes in the future" in error.value.message_dict["occurred_at"][0]
    assert SpendEvent.objects.count() == 1


def test_day_is_the_brands_local_day() -> None:
    # 12:00 UTC is 21:00 on the 27th in Tokyo; 16:00 UTC is 01:00 on the 28th there.
    campaign = CampaignFactory.create(brand__timezone="Asia/Tokyo")
    record_spend(campaign.pk, "5", at=NOW)

    record_spend(campaign.pk, "2", at=NOW + timedelta(hours=4))

    brand = Brand.objects.get()
    assert brand.current_daily_spend == Decimal("2")
    assert str(brand.counters_day) == "2026-11-28"
    assert brand.current_monthly_spend == Decimal("7")


def test_unknown_campaign_writes_nothing() -> None:
    CampaignFactory.create()

    with pytest.raises(ValidationError) as error:
        record_spend(999_999, "1", at=NOW)

    assert error.value.message_dict == {"campaign_id": ["no campaign with id 999999"]}
    assert not SpendEvent.objects.exists()


def test_database_refuses_to_update_a_ledger_row() -> None:
    campaign = CampaignFactory.create()
    record_spend(campaign.pk, "1", at=NOW)

    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE ads_spendevent SET amount = 1")


def test_database_refuses_a_non_positive_amount() -> None:
    campaign = CampaignFactory.create()

    with pytest.raises(IntegrityError):
        SpendEvent.objects.create(
            campaign=campaign,
            brand=campaign.brand,
            amount=Decimal("0"),
            occurred_at=NOW,
            recorded_at=NOW,
            source="cli",
            idempotency_key="x",
        )


# --- A spend may state its currency: the brand's, or it is refused (SPEC 12) ------------


def test_a_spend_stating_its_brands_currency_in_any_case_is_recorded() -> None:
    campaign = CampaignFactory.create(brand__currency="KWD", evaluated_at=NOW)

    result = record_spend(campaign.pk, "1.250", currency="kwd", at=NOW)

    assert result.created
    assert Brand.objects.get().current_daily_spend == Decimal("1.25")


def test_a_spend_in_another_currency_is_refused_naming_both_and_nothing_is_written() -> None:
    campaign = CampaignFactory.create(brand__name="Kuwait", brand__currency="KWD", evaluated_at=NOW)
    record_spend(campaign.pk, "1", idempotency_key="first", at=NOW)
    counters = list(Brand.objects.values_list("current_daily_spend", "current_monthly_spend"))
    audit = CampaignStatusChange.objects.count()

    with pytest.raises(ValidationError) as error:
        record_spend(campaign.pk, "1", currency="EUR", at=NOW)

    assert error.value.message_dict == {
        "currency": [
            "the spend is in EUR but brand 'Kuwait' pays in KWD; nothing is converted, so send "
            "the amount in KWD"
        ]
    }
    assert list(SpendEvent.objects.values_list("idempotency_key", flat=True)) == ["first"]
    assert list(Brand.objects.values_list("current_daily_spend", "current_monthly_spend")) == (
        counters
    )
    assert Campaign.objects.get().daily_spend == Decimal(1)
    assert CampaignStatusChange.objects.count() == audit


def test_a_recorded_spend_sent_again_in_another_currency_is_refused_not_already_recorded() -> None:
    """The key was recorded for a spend in the brand's currency; the same key stating
    another currency is not that spend, and saying "already recorded" would hide it."""
    campaign = CampaignFactory.create(brand__currency="EUR")
    record_spend(campaign.pk, "1", idempotency_key="k-1", currency="EUR", at=NOW)

    with pytest.raises(ValidationError, match="the spend is in USD but brand"):
        record_spend(campaign.pk, "1", idempotency_key="k-1", currency="USD", at=NOW)

    assert SpendEvent.objects.count() == 1
