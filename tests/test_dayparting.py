"""Dayparting in enforcement and in the admin (SPEC 5, 6)."""

import re
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries

from ads.models import (
    Brand,
    Campaign,
    CampaignStatusChange,
    Schedule,
    ScheduleWindow,
    SettingChange,
)
from ads.rules import EVERY_DAY, PauseReason, weekday_mask
from ads.services import record_spend, refresh_campaign_states
from tests.conftest import writes
from tests.factories import BrandFactory, CampaignFactory, ScheduleFactory

pytestmark = pytest.mark.django_db

ZONES = ["UTC"] + [
    f"{region}/{city}"
    for region, cities in (
        ("Europe", ("London", "Paris", "Berlin", "Helsinki", "Moscow", "Istanbul")),
        ("Asia", ("Dubai", "Kolkata", "Kathmandu", "Tokyo")),
        ("Australia", ("Sydney", "Lord_Howe")),
        ("Pacific", ("Auckland",)),
        ("America", ("New_York", "Toronto", "Chicago", "Denver", "Los_Angeles", "Sao_Paulo")),
    )
    for city in cities
]
BEFORE = datetime(2026, 11, 27, 13, 45, tzinfo=UTC)
AFTER = BEFORE + timedelta(minutes=15)  # 09:00 in New York and Toronto, 17:00 in Moscow


def nine_to_five() -> Schedule:
    schedule = ScheduleFactory.create(name="Office hours")
    ScheduleWindow.objects.create(
        schedule=schedule, weekdays=EVERY_DAY, start=time(9), end=time(17)
    )
    return schedule


def test_enforcement_over_1000_campaigns_in_20_zones_flips_exactly_the_crossed_windows(
    django_assert_max_num_queries: DjangoAssertNumQueries,
) -> None:
    schedule = nine_to_five()
    brands = [BrandFactory.create(timezone=ZONES[n % 20]) for n in range(100)]
    Campaign.objects.bulk_create(
        Campaign(brand=brands[n % 100], name=f"c{n}", schedule=schedule if n // 100 % 2 else None)
        for n in range(1000)
    )
    refresh_campaign_states(at=BEFORE, actor="enforce_dayparting")
    before = dict(Campaign.objects.values_list("pk", "is_active"))

    with django_assert_max_num_queries(14) as queries:
        result = refresh_campaign_states(at=AFTER, actor="enforce_dayparting")

    flipped = Campaign.objects.filter(pk__in=[c.campaign_id for c in result.changes])
    assert set(flipped.values_list("brand__timezone", flat=True)) == {
        "America/New_York", "America/Toronto", "Europe/Moscow", "Europe/Istanbul",
    }  # fmt: skip
    assert all(c.schedule_id == schedule.pk for c in flipped)
    assert len(result.changes) == 4 * 5 * 5  # 4 zones x 5 brands x 5 scheduled campaigns
    assert all(before[c.campaign_id] != c.is_active for c in result.changes)
    # (insert + update) for opened and for closed, and one insert of all their events
    assert len(writes(queries)) == 5


def test_campaign_outside_its_window_is_paused_with_the_reason() -> None:
    campaign = CampaignFactory.create(schedule=nine_to_five(), brand__timezone="Asia/Tokyo")

    refresh_campaign_states(at=AFTER, actor="enforce_dayparting")  # 23:00 in Tokyo

    campaign.refresh_from_db()
    assert campaign.pause_reasons == (PauseReason.OUTSIDE_SCHEDULE,)


def test_opening_window_does_not_resume_a_budget_paused_campaign() -> None:
    campaign = CampaignFactory.create(
        schedule=nine_to_five(), brand__timezone="America/New_York", brand__daily_budget=Decimal(5)
    )
    refresh_campaign_states(at=BEFORE, actor="enforce_dayparting")
    record_spend(campaign.pk, "5", at=BEFORE)

    refresh_campaign_states(at=AFTER, actor="enforce_dayparting")

    campaign.refresh_from_db()
    assert not campaign.is_active
    assert campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)
    assert CampaignStatusChange.objects.latest("pk").reason == ("still paused (-outside_schedule)")


# --- Admin ----------------------------------------------------------------------------


def schedule_form(name: str, *windows: dict[str, object], initial: int = 0) -> dict[str, object]:
    data: dict[str, object] = {
        "name": name,
        "windows-TOTAL_FORMS": str(len(windows)),
        "windows-INITIAL_FORMS": str(initial),
        "windows-MIN_NUM_FORMS": "1",
        "windows-MAX_NUM_FORMS": "1000",
    }
    for n, window in enumerate(windows):
        data |= {f"windows-{n}-{key}": value for key, value in window.items()}
    return data


EVERY_DAY_FORM = [str(d) for d in range(7)]


def test_admin_creates_a_schedule_with_windows(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:ads_schedule_add"),
        schedule_form(
            "Office and Saturday night",
            {"days": ["0", "1", "2", "3", "4"], "start": "09:00", "end": "17:00"},
            {"days": ["5"], "start": "22:00", "end": "02:00"},
        ),
    )

    assert response.status_code == 302
    listing = admin_client.get(reverse("admin:ads_schedule_changelist")).content.decode()
    assert "Mon–Fri 09:00–17:00; Sat 22:00–02:00" in listing
    assert list(ScheduleWindow.objects.values_list("weekdays", flat=True)) == [
        weekday_mask(range(5)),
        weekday_mask([5]),
    ]


def test_new_schedule_form_offers_one_every_day_window(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:ads_schedule_add")).content.decode()

    boxes = re.findall(r'<input type="checkbox" name="windows-0-days"[^>]*>', page)
    assert len(boxes) == 7
    assert all("checked" in box for box in boxes)
    assert 'name="windows-1-' not in page


def test_the_last_window_of_a_schedule_cannot_be_deleted(admin_client: Client) -> None:
    schedule = nine_to_five()
    window = schedule.windows.get()

    response = admin_client.post(
        reverse("admin:ads_schedule_change", args=[schedule.pk]),
        schedule_form(
            "Office hours",
            {"id": str(window.pk), "schedule": str(schedule.pk), "days": EVERY_DAY_FORM,
             "start": "09:00", "end": "17:00", "DELETE": "on"},
            initial=1,
        ),
    )  # fmt: skip

    assert response.status_code == 200
    assert "Please submit at least 1 form" in response.content.decode()
    assert schedule.windows.count() == 1


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            {"days": EVERY_DAY_FORM, "start": "09:10", "end": "17:00"},
            "Window 1: Start: 09:10 is not on the 15-minute grid; use :00, :15, :30 or :45",
        ),
        (
            {"start": "09:00", "end": "17:00"},
            "Window 1: Weekdays: choose at least one weekday",
        ),
        (
            {"days": EVERY_DAY_FORM, "start": "9am", "end": "17:00"},
            "Window 1: Start: Enter a valid time.",
        ),
    ],
)
def test_bad_window_is_named_with_its_reason_and_nothing_is_saved(
    admin_client: Client, window: dict[str, object], message: str
) -> None:
    response = admin_client.post(reverse("admin:ads_schedule_add"), schedule_form("Bad", window))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Schedule.objects.exists()


def test_unknown_brand_zone_is_refused(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:ads_brand_add"),
        {
            "name": "Zoned", "timezone": "Europe/Atlantis", "is_active": "on",
            "daily_budget": "10", "monthly_budget": "100",
            "campaigns-TOTAL_FORMS": "0", "campaigns-INITIAL_FORMS": "0",
        },
    )  # fmt: skip

    assert response.status_code == 200
    assert "&#x27;Europe/Atlantis&#x27; is not a known IANA time zone" in response.content.decode()
    assert not Brand.objects.exists()


def test_opening_a_window_in_the_admin_resumes_its_campaigns_at_once(
    admin_client: Client, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to(AFTER, tick=False)  # 14:00 UTC
    schedule = ScheduleFactory.create(name="Mornings")
    window = ScheduleWindow.objects.create(
        schedule=schedule, weekdays=EVERY_DAY, start=time(6), end=time(12)
    )
    campaign = CampaignFactory.create(schedule=schedule, evaluated_at=AFTER)
    assert not Campaign.objects.get().is_active

    response = admin_client.post(
        reverse("admin:ads_schedule_change", args=[schedule.pk]),
        schedule_form(
            "Mornings",
            {"id": str(window.pk), "schedule": str(schedule.pk), "days": EVERY_DAY_FORM,
             "start": "06:00", "end": "15:00"},
            initial=1,
        ),
    )  # fmt: skip

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.is_active
    assert CampaignStatusChange.objects.latest("pk").actor == "admin"
    audit = SettingChange.objects.get(field="windows")
    assert (audit.old_value, audit.new_value) == ("Every day 06:00–12:00", "Every day 06:00–15:00")


def test_campaign_page_says_whether_the_schedule_allows_now_and_when_it_changes(
    admin_client: Client, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to(AFTER, tick=False)  # 09:00 in New York
    campaign = CampaignFactory.create(
        schedule=nine_to_five(), brand__timezone="America/New_York", evaluated_at=AFTER
    )

    page = admin_client.get(reverse("admin:ads_campaign_change", args=[campaign.pk]))

    assert (
        "Yes (Every day 09:00–17:00); closes Fri 27 Nov 17:00 America/New_York (22:00 UTC)"
        in page.content.decode()
    )
