"""The event log: each decision written with the change it describes, numbered per
stream without gaps, self-contained, and append-only."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction

from ads.models import Brand, Campaign, Event, EventType
from ads.rules import PauseReason
from ads.services import record_spend, save_brand, set_campaigns_enabled
from tests.conftest import NOW
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def events(**filters: object) -> list[Event]:
    return list(Event.objects.filter(**filters).order_by("pk"))


def test_a_new_campaign_that_starts_running_says_so_first() -> None:
    campaign = CampaignFactory.create(evaluated_at=NOW)

    (started,) = events(campaign=campaign)

    assert (started.type, started.sequence) == (EventType.CAMPAIGN_RESUMED, 1)
    assert started.payload["campaign"]["was_active"] is False


def test_a_spend_that_exhausts_the_budget_writes_a_paused_event_with_its_figures() -> None:
    campaign = CampaignFactory.create(
        name="Search", brand__name="Acme", brand__daily_budget=Decimal("10.00"), evaluated_at=NOW
    )

    record_spend(campaign.pk, "10.00", at=NOW)

    _started, paused = events(campaign=campaign)
    assert (paused.type, paused.stream, paused.sequence) == (
        EventType.CAMPAIGN_PAUSED,
        f"campaign:{campaign.pk}",
        2,
    )
    assert paused.event_id.startswith("evt_")
    assert paused.actor == "spend"
    assert paused.payload["campaign"] == {
        "id": campaign.pk,
        "name": "Search",
        "is_active": False,
        "pause_reasons": [PauseReason.BRAND_DAILY_BUDGET],
        "was_active": True,
        "previous_pause_reasons": [],
        "change": "paused (+brand_daily_budget)",
        "daily_spend": "10.00",
        "daily_budget": None,
    }
    assert paused.payload["brand"]["today"] == {
        "day": "2026-11-27",
        "spend": "10.00",
        "budget": "10.00",
    }
    assert paused.payload["brand"]["currency"] == "EUR"
    assert (paused.payload["stream"], paused.payload["sequence"]) == (paused.stream, 2)


def test_a_campaigns_events_are_numbered_one_by_one_across_kinds() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10.00"), evaluated_at=NOW)
    record_spend(campaign.pk, "10.00", at=NOW)  # paused
    brand = Brand.objects.get()
    brand.daily_budget = Decimal("20.00")
    save_brand(brand, changed_fields=["daily_budget"], actor="alice", at=NOW)  # resumed
    set_campaigns_enabled([campaign.pk], enabled=False, actor="alice", at=NOW)

    stream = events(campaign=campaign)

    assert [(e.type, e.sequence) for e in stream] == [
        (EventType.CAMPAIGN_RESUMED, 1),  # created and evaluated: it runs
        (EventType.CAMPAIGN_PAUSED, 2),
        (EventType.CAMPAIGN_RESUMED, 3),
        (EventType.CAMPAIGN_SETTINGS_CHANGED, 4),
        (EventType.CAMPAIGN_PAUSED, 5),
    ]
    assert stream[3].payload["change"] == {
        "object": "campaign",
        "object_id": campaign.pk,
        "name": str(Campaign.objects.get()),
        "field": "is_enabled",
        "old": "True",
        "new": "False",
    }
    assert stream[3].actor == stream[4].actor == "alice"


def test_thresholds_and_brand_settings_go_to_the_brands_stream() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10.00"), evaluated_at=NOW)
    record_spend(campaign.pk, "8.00", at=NOW)  # 50 % and 80 %
    brand = Brand.objects.get()
    brand.timezone = "Asia/Tokyo"
    save_brand(brand, changed_fields=["timezone"], actor="alice", at=NOW)

    stream = events(campaign=None)

    assert [(e.type, e.stream, e.sequence) for e in stream] == [
        (EventType.BUDGET_THRESHOLD_REACHED, f"brand:{brand.pk}", 1),
        (EventType.BUDGET_THRESHOLD_REACHED, f"brand:{brand.pk}", 2),
        (EventType.BRAND_SETTINGS_CHANGED, f"brand:{brand.pk}", 3),
    ]
    assert stream[1].payload["alert"] == {
        "budget": "daily",
        "threshold_percent": 80,
        "period": "2026-11-27",
        "spend": "8.00",
        "budget_amount": "10.00",
    }
    assert stream[2].payload["change"]["new"] == "Asia/Tokyo"


def test_a_change_refused_leaves_no_event() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10.00"), evaluated_at=NOW)
    record_spend(campaign.pk, "1.00", at=NOW)
    brand = Brand.objects.get()
    brand.currency, brand.daily_budget = "USD", Decimal("1.00")  # paused, if it were saved
    before = Event.objects.count()

    with pytest.raises(ValidationError):
        save_brand(brand, changed_fields=["currency", "daily_budget"], actor="alice", at=NOW)

    assert Event.objects.count() == before


def test_an_event_is_rolled_back_with_its_change() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10.00"), evaluated_at=NOW)
    before = Event.objects.count()

    def spend_then_fail() -> None:
        with transaction.atomic():
            record_spend(campaign.pk, "10.00", at=NOW)
            assert Event.objects.count() == before + 4  # paused; 50, 80 and 100 % reached
            raise RuntimeError("the spend's transaction fails after the pause")

    with pytest.raises(RuntimeError):
        spend_then_fail()

    assert Event.objects.count() == before
    assert Campaign.objects.get().is_active


def test_the_event_log_refuses_updates_in_the_database() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10.00"), evaluated_at=NOW)
    record_spend(campaign.pk, "10.00", at=NOW)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Event.objects.update(actor="someone else")


def test_a_changed_contact_address_is_an_event_without_the_address() -> None:
    campaign = CampaignFactory.create(evaluated_at=NOW)
    brand = campaign.brand
    brand.contact_email = "ops@acme.example"
    save_brand(brand, changed_fields=["contact_email"], actor="alice", at=NOW)

    (changed,) = events(type=EventType.BRAND_SETTINGS_CHANGED)

    assert changed.payload["change"]["field"] == "contact_email"
    assert "ops@acme.example" not in str(changed.payload)
