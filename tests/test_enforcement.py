"""refresh_campaign_states: set-based enforcement and period roll-over (SPEC 5, 7)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from pytest_django import DjangoAssertNumQueries

from ads.models import Brand, Campaign, CampaignStatusChange
from ads.rules import PauseReason
from ads.services import record_spend, refresh_campaign_states
from tests.conftest import NOW, writes
from tests.factories import BrandFactory, CampaignFactory

pytestmark = pytest.mark.django_db

ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Tokyo", "Asia/Kathmandu"]


@pytest.fixture(params=[10, 1000])
def count(request: pytest.FixtureRequest) -> int:
    """So many campaigns, ten per brand, brands spread over five time zones."""
    count: int = request.param
    brands = [
        BrandFactory.create(timezone=ZONES[n % len(ZONES)]) for n in range(max(1, count // 10))
    ]
    Campaign.objects.bulk_create(
        Campaign(brand=brands[n % len(brands)], name=f"c{n}") for n in range(count)
    )
    return count


def test_query_count_does_not_grow_with_campaigns(
    count: int, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    refresh_campaign_states(at=NOW, actor="test")
    Brand.objects.update(daily_budget=Decimal(0))

    with django_assert_max_num_queries(11) as queries:
        result = refresh_campaign_states(at=NOW, actor="enforce_budget_limits")

    assert len(result.changes) == count
    # One audit insert, one update and one event insert for all of them (and one read of
    # the streams' last sequence numbers, one look for enabled webhook endpoints).
    assert len(writes(queries)) == 3
    assert CampaignStatusChange.objects.filter(actor="enforce_budget_limits").count() == count


def test_first_pass_rolls_over_and_evaluates_in_bounded_queries(
    count: int, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    # per zone: roll campaigns' day, brands' day, brands' month; then 1 audit + 1 update;
    # and one, for every zone, checking the new periods' ledger against counters' limit;
    # the events: one read of the streams' sequences, one insert, one look for endpoints
    with django_assert_max_num_queries(6 + 3 * len(ZONES) + 2 + 1 + 3):
        result = refresh_campaign_states(at=NOW, actor="test")

    assert len(result.changes) == count
    assert Campaign.objects.filter(is_active=True).count() == count


def test_pass_with_nothing_to_change_writes_nothing(
    count: int, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    refresh_campaign_states(at=NOW, actor="test")

    with django_assert_max_num_queries(6) as queries:
        result = refresh_campaign_states(at=NOW + timedelta(minutes=5), actor="test")

    assert result.changes == ()
    assert writes(queries) == []


def test_only_the_campaigns_whose_state_changes_are_written() -> None:
    exhausted, fine = BrandFactory.create(), BrandFactory.create()
    CampaignFactory.create_batch(3, brand=exhausted)
    CampaignFactory.create_batch(2, brand=fine)
    refresh_campaign_states(at=NOW, actor="test")
    Brand.objects.filter(pk=exhausted.pk).update(daily_budget=Decimal(0))

    result = refresh_campaign_states(at=NOW, actor="enforce_budget_limits")

    assert {c.brand_id for c in result.changes} == {exhausted.pk}
    assert len(result.changes) == 3
    assert CampaignStatusChange.objects.filter(actor="enforce_budget_limits").count() == 3


def test_new_local_day_resets_daily_counters_and_resumes_budget_paused_campaigns() -> None:
    campaign = CampaignFactory.create(
        brand__daily_budget=Decimal("10"), brand__timezone="Asia/Tokyo"
    )
    record_spend(campaign.pk, "10", at=NOW)  # 21:00 in Tokyo: paused for the day
    assert not Campaign.objects.get().is_active

    result = refresh_campaign_states(at=NOW + timedelta(hours=3), actor="reset_daily_budgets")

    brand = Brand.objects.get()
    campaign.refresh_from_db()
    assert result.rolled_over == (brand.pk,)
    assert (brand.current_daily_spend, brand.current_monthly_spend) == (Decimal(0), Decimal(10))
    assert campaign.daily_spend == Decimal(0)
    assert campaign.is_active
    assert CampaignStatusChange.objects.filter(actor="reset_daily_budgets").get().reason == (
        "resumed (-brand_daily_budget)"
    )


def test_roll_over_twice_changes_nothing_the_second_time() -> None:
    campaign = CampaignFactory.create()
    record_spend(campaign.pk, "4", at=NOW)
    tomorrow = NOW + timedelta(days=1)
    refresh_campaign_states(at=tomorrow, actor="reset")
    record_spend(campaign.pk, "1", at=tomorrow)

    second = refresh_campaign_states(at=tomorrow + timedelta(minutes=1), actor="reset")

    assert second.rolled_over == ()
    assert Brand.objects.get().current_daily_spend == Decimal(1)


def test_roll_over_keeps_spend_already_dated_in_the_new_day() -> None:
    campaign = CampaignFactory.create()
    just_before_midnight = NOW.replace(hour=23, minute=58)
    record_spend(
        campaign.pk,
        "2",
        occurred_at=just_before_midnight + timedelta(minutes=4),
        at=just_before_midnight,
    )

    refresh_campaign_states(at=just_before_midnight + timedelta(minutes=3), actor="reset")

    brand = Brand.objects.get()
    assert str(brand.counters_day) == "2026-11-28"
    assert brand.current_daily_spend == Decimal(2)
    assert Campaign.objects.get().daily_spend == Decimal(2)


def test_new_month_resets_monthly_counter() -> None:
    campaign = CampaignFactory.create(brand__monthly_budget=Decimal("5"))
    record_spend(campaign.pk, "5", at=NOW)

    refresh_campaign_states(at=NOW.replace(month=12, day=1), actor="reset_monthly_budgets")

    campaign.refresh_from_db()
    assert Brand.objects.get().current_monthly_spend == Decimal(0)
    assert campaign.is_active
    assert campaign.pause_reasons == ()


def test_spend_after_local_midnight_rolls_over_first() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10"))
    record_spend(campaign.pk, "10", at=NOW)

    result = record_spend(
        campaign.pk, "1", at=NOW.replace(hour=0, minute=0, second=30) + timedelta(days=1)
    )

    assert result.brand.daily_spend == Decimal(1)
    assert result.campaign.is_active
    assert result.campaign.pause_reasons == ()
    assert [c.transition for c in result.changes] == ["resumed (-brand_daily_budget)"]


def test_brand_switched_off_pauses_its_campaigns() -> None:
    campaign = CampaignFactory.create()
    Brand.objects.update(is_active=False)

    refresh_campaign_states(at=NOW, actor="test")

    campaign.refresh_from_db()
    assert campaign.pause_reasons == (PauseReason.BRAND_INACTIVE,)
