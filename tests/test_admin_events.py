"""The event log in the admin: a read-only list a viewer can filter and search, and each
event's payload as the feed and the webhooks send it."""

from decimal import Decimal

import pytest
from django.test import Client

from ads.models import Campaign, Event, EventType
from ads.services import record_spend
from tests.conftest import NOW, admin_url
from tests.factories import CampaignFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


@pytest.fixture
def paused() -> Event:
    """Acme's "Search" started running, then a spend used up Acme's day: paused."""
    campaign = CampaignFactory.create(
        name="Search", brand__name="Acme", brand__daily_budget=Decimal("10.00"), evaluated_at=NOW
    )
    record_spend(campaign.pk, "10.00", at=NOW)
    return Event.objects.get(campaign=campaign, type=EventType.CAMPAIGN_PAUSED)


@pytest.fixture
def viewer(client: Client) -> Client:
    client.force_login(UserFactory.create(groups=["Viewers"]))
    return client


def test_a_viewer_sees_the_events_list_newest_first(viewer: Client, paused: Event) -> None:
    response = viewer.get(admin_url(Event, "changelist"))

    page = response.content.decode()
    assert response.status_code == 200
    campaign = Campaign.objects.get()
    stream = f"campaign:{campaign.pk}"
    assert f"{stream}#2" in page
    assert page.index(f"{stream}#2") < page.index(f"{stream}#1")
    assert f"brand:{campaign.brand_id}#3" in page  # the 100 % alert, after 50 and 80
    assert ">Campaign paused<" in page
    assert ">spend<" in page
    assert 'class="addlink"' not in page


def test_a_viewer_reads_an_events_payload_pretty_printed(viewer: Client, paused: Event) -> None:
    response = viewer.get(admin_url(paused))

    page = response.content.decode()
    assert response.status_code == 200
    assert paused.event_id in page
    assert '<pre class="event-payload">{\n  &quot;actor&quot;: &quot;spend&quot;,' in page
    assert "\n    &quot;name&quot;: &quot;Search&quot;,\n" in page
    assert 'name="_save"' not in page


def test_the_list_finds_an_event_by_its_id(viewer: Client, paused: Event) -> None:
    response = viewer.get(admin_url(Event, "changelist"), {"q": f" {paused.event_id} "})

    assert list(response.context["cl"].result_list) == [paused]


def test_the_list_filters_by_type_and_brand(viewer: Client, paused: Event) -> None:
    CampaignFactory.create(evaluated_at=NOW)  # another brand's campaign starts running

    by_type = viewer.get(admin_url(Event, "changelist"), {"type": EventType.CAMPAIGN_PAUSED})
    by_brand = viewer.get(admin_url(Event, "changelist"), {"brand__id__exact": paused.brand_id})

    assert list(by_type.context["cl"].result_list) == [paused]
    assert set(by_brand.context["cl"].result_list) == set(Event.objects.filter(brand=paused.brand))
    assert by_brand.context["cl"].result_count == 5  # started, paused, 50, 80 and 100 %
