"""What a new ad-ops user meets in the admin in the first hour (issue 12, items 9-15):
removing mistakes, warnings about budgets that bind first, one vocabulary, over-spend
shown, logging in with a role, picking zones and times."""

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from ads.models import Brand, Campaign, CampaignStatusChange, ScheduleWindow, SettingChange
from ads.rules import PauseReason
from ads.services import record_spend, refresh_campaign_states, set_campaigns_enabled
from tests.conftest import NOW
from tests.factories import BrandFactory, CampaignFactory, ScheduleFactory, UserFactory
from tests.html_forms import read_form

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def save_in_admin(client: Client, row: Brand | Campaign, field: str, value: str) -> str:
    """Set one field on `row`'s admin page and save; it must be saved. The page it
    lands on, with its messages."""
    name = row._meta.model_name
    url = reverse(f"admin:ads_{name}_change", args=[row.pk])
    data = read_form(page(client, url), f"{name}_form")
    data[field] = [value]

    response = client.post(url, data, follow=True)

    assert [status for _, status in response.redirect_chain] == [302]  # saved
    return response.content.decode()


# --- 9. Removing what was created by mistake --------------------------------------------


def test_a_new_campaign_without_spend_can_be_deleted_by_a_budget_manager(client: Client) -> None:
    manager = UserFactory.create(is_staff=False, groups=["Budget managers"])
    client.force_login(manager)
    campaign = CampaignFactory.create(evaluated_at=NOW)  # it has a status change now
    url = reverse("admin:ads_campaign_delete", args=[campaign.pk])

    confirm = page(client, url)
    response = client.post(url, {"post": "yes"})

    assert "Are you sure" in confirm
    assert "permission" not in confirm
    assert response.status_code == 302
    assert not Campaign.objects.filter(pk=campaign.pk).exists()
    assert not CampaignStatusChange.objects.exists()
    deleted = SettingChange.objects.get(field="deleted")
    assert (deleted.actor, deleted.object_id) == (manager.username, campaign.pk)


def test_a_campaign_with_spend_says_why_it_cannot_be_deleted_and_offers_archiving(
    admin_client: Client,
) -> None:
    campaign = CampaignFactory.create(name="Search")
    record_spend(campaign.pk, "12.50", at=NOW)

    text = page(admin_client, reverse("admin:ads_campaign_delete", args=[campaign.pk]))
    response = admin_client.post(
        reverse("admin:ads_campaign_delete", args=[campaign.pk]), {"post": "yes"}
    )

    assert "Campaign &#x27;Search (" in text
    assert "has 1 spend(s) in the ledger (€12.50)" in text
    assert "Archive it instead" in text
    assert "permission" not in text
    assert response.status_code == 200
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_a_campaign_row_with_spend_deleted_on_the_brand_page_is_refused_in_words(
    admin_client: Client,
) -> None:
    campaign = CampaignFactory.create(name="Search")
    record_spend(campaign.pk, "1.00", at=NOW)
    url = reverse("admin:ads_brand_change", args=[campaign.brand_id])
    data = read_form(page(admin_client, url), "brand_form")
    data["campaigns-0-DELETE"] = ["on"]

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "has 1 spend(s) in the ledger" in response.content.decode()
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_archiving_hides_switches_off_and_restoring_brings_back_switched_off(
    admin_client: Client, admin_user: User
) -> None:
    campaign = CampaignFactory.create(name="Old promo")
    record_spend(campaign.pk, "5.00", at=NOW)
    assert Campaign.objects.get().is_active
    listing = reverse("admin:ads_campaign_changelist")

    response = admin_client.post(listing, {"action": "archive", "_selected_action": [campaign.pk]})

    assert response.status_code == 302
    archived = Campaign.objects.get()
    assert archived.archived_at == NOW
    assert (archived.is_enabled, archived.is_active) == (False, False)
    assert "Old promo" not in page(admin_client, listing)
    assert "Old promo" in page(admin_client, f"{listing}?archived=yes")
    assert "Old promo" in page(admin_client, reverse("admin:ads_spendevent_changelist"))
    audit = set(SettingChange.objects.values_list("field", "new_value"))
    assert {("archived", "True"), ("is_enabled", "False")} <= audit

    archive = f"{listing}?archived=yes"  # where a person finds it to restore it
    response = admin_client.post(archive, {"action": "restore", "_selected_action": [campaign.pk]})

    assert response.status_code == 302
    restored = Campaign.objects.get()
    assert restored.archived_at is None
    assert not restored.is_enabled  # a person turns it on
    assert "Old promo" in page(admin_client, listing)


def test_an_archived_brand_leaves_the_dashboard_and_enforcement_passes(
    admin_client: Client,
) -> None:
    campaign = CampaignFactory.create(brand__name="Gone", brand__daily_budget=Decimal("10.00"))
    record_spend(campaign.pk, "9.00", at=NOW)
    assert "Gone" in page(admin_client, reverse("admin:index"))

    response = admin_client.post(
        reverse("admin:ads_brand_changelist"),
        {"action": "archive", "_selected_action": [campaign.brand_id]},
    )
    assert response.status_code == 302
    changes = CampaignStatusChange.objects.count()
    refresh_campaign_states(at=NOW, actor="enforce_budget_limits")

    assert "Gone" not in page(admin_client, reverse("admin:index"))
    assert "Gone" not in page(admin_client, reverse("admin:ads_brand_changelist"))
    assert CampaignStatusChange.objects.count() == changes
    assert not Brand.objects.get().is_active


# --- 10. Budgets that bind first ----------------------------------------------------


def test_a_monthly_budget_below_the_daily_one_is_saved_with_a_warning(
    admin_client: Client,
) -> None:
    text = save_in_admin(admin_client, BrandFactory.create(), "monthly_budget", "50.00")

    assert Brand.objects.get().monthly_budget == Decimal("50.00")
    assert "The monthly budget (€50.00) is below the daily budget (€100.00)" in text
    assert "the monthly budget binds first" in text


def test_a_campaign_budget_above_its_brands_is_saved_with_a_warning(
    admin_client: Client,
) -> None:
    campaign = CampaignFactory.create(name="Search")

    text = save_in_admin(admin_client, campaign, "daily_budget", "300.00")

    assert Campaign.objects.get().daily_budget == Decimal("300.00")
    assert (
        "Search: its own daily budget (€300.00) is above the brand&#x27;s daily budget (€100.00)"
        in text
    )


def test_budgets_that_make_sense_save_without_a_warning(admin_client: Client) -> None:
    text = save_in_admin(admin_client, BrandFactory.create(), "daily_budget", "120.00")

    assert "binds first" not in text


# --- 11. One vocabulary ---------------------------------------------------------------


@pytest.fixture
def two_brands_paused() -> tuple[Campaign, Campaign]:
    acme = CampaignFactory.create(
        brand__name="Acme", brand__daily_budget=Decimal("5.00"), evaluated_at=NOW
    )
    globex = CampaignFactory.create(
        brand__name="Globex", brand__daily_budget=Decimal("5.00"), evaluated_at=NOW
    )
    record_spend(acme.pk, "5.00", at=NOW)
    record_spend(globex.pk, "5.00", at=NOW)
    return acme, globex


def test_status_changes_read_in_the_same_words_as_the_campaign_list(
    admin_client: Client, two_brands_paused: tuple[Campaign, Campaign]
) -> None:
    changes = page(admin_client, reverse("admin:ads_campaignstatuschange_changelist"))
    campaigns = page(admin_client, reverse("admin:ads_campaign_changelist"))
    dashboard = page(admin_client, reverse("admin:index"))

    label = PauseReason.BRAND_DAILY_BUDGET.label
    assert "Paused: Brand daily budget exhausted" in changes
    assert label in campaigns
    assert label in dashboard
    for text in (changes, campaigns, dashboard):
        assert "brand_daily_budget" not in text.split("<body")[1].split("<script")[0].replace(
            'value="brand_daily_budget"', ""
        )


def test_status_changes_can_be_filtered_and_searched_by_brand(
    admin_client: Client, two_brands_paused: tuple[Campaign, Campaign]
) -> None:
    acme, _ = two_brands_paused
    url = reverse("admin:ads_campaignstatuschange_changelist")

    filtered = page(admin_client, f"{url}?campaign__brand__id__exact={acme.brand_id}")
    searched = page(admin_client, f"{url}?q=Globex")

    assert acme.name in filtered
    assert "Globex" not in filtered.split('id="changelist-filter"')[0]
    assert "Globex" in searched
    assert acme.name not in searched


def test_recent_pauses_show_each_campaigns_state_now(
    admin_client: Client, two_brands_paused: tuple[Campaign, Campaign]
) -> None:
    acme, _ = two_brands_paused
    brand = acme.brand
    brand.daily_budget = Decimal("50.00")
    brand.save()
    refresh_campaign_states(at=NOW, actor="test")  # Acme's campaign runs again

    pauses = page(admin_client, reverse("admin:index")).split('id="recent-pauses"')[1]
    pauses = pauses.split("</section>")[0]
    acme_row = next(row for row in pauses.split("<tr>") if acme.name in row)
    globex_row = next(row for row in pauses.split("<tr>") if "Globex" in row)

    assert "Running again" in acme_row
    assert "Paused: Brand daily budget exhausted" in globex_row


# --- 12. Over-spend shown -------------------------------------------------------------


def test_spend_past_the_budget_shows_how_much_over(admin_client: Client) -> None:
    campaign = CampaignFactory.create(
        brand__daily_budget=Decimal("50.00"), daily_budget=Decimal("50.00")
    )
    record_spend(campaign.pk, "55.00", at=NOW)  # one spend can pass the budget

    brands = page(admin_client, reverse("admin:ads_brand_changelist"))
    campaigns = page(admin_client, reverse("admin:ads_campaign_changelist"))
    detail = page(admin_client, reverse("admin:ads_campaign_change", args=[campaign.pk]))

    assert "€5.00 over" in brands
    assert "€0.00 left" not in brands
    assert "€55.00 / €50.00 (€5.00 over)" in campaigns
    assert "spent €55.00 of €50.00 (€5.00 over) today" in detail


# --- 14. Small frictions ----------------------------------------------------------------


@pytest.mark.parametrize("role", ["Viewers", "Budget managers"])
def test_a_person_put_in_a_role_can_log_in_without_staff_status(client: Client, role: str) -> None:
    UserFactory.create(username="maria", is_staff=False, groups=[role])

    response = client.post(
        reverse("admin:login"),
        {"username": "maria", "password": "a-long-test-password", "next": "/admin/"},
    )

    assert response.status_code == 302
    assert "Brands" in page(client, reverse("admin:index"))


def test_a_person_with_no_role_and_no_staff_status_still_cannot_log_in(client: Client) -> None:
    UserFactory.create(username="guest", is_staff=False)

    response = client.post(
        reverse("admin:login"), {"username": "guest", "password": "a-long-test-password"}
    )

    assert response.status_code == 200
    assert "staff account" in response.content.decode()


def test_the_time_zone_is_chosen_from_a_searchable_list_of_iana_zones(
    admin_client: Client,
) -> None:
    text = page(admin_client, reverse("admin:ads_brand_add"))

    assert 'list="iana-zones"' in text
    assert '<option value="Europe/Berlin">' in text
    assert '<option value="America/Argentina/Buenos_Aires">' in text
    assert "posix/" not in text


def test_schedule_times_are_24_hour_quarter_hours(admin_client: Client) -> None:
    schedule = ScheduleFactory.create()
    ScheduleWindow.objects.create(schedule=schedule, start=time(21, 30), end=time(2))

    text = page(admin_client, reverse("admin:ads_schedule_change", args=[schedule.pk]))
    form = read_form(text, "schedule_form")

    assert 'type="time"' not in text
    assert '<option value="21:30" selected>21:30</option>' in text
    assert (form["windows-0-start"], form["windows-0-end"]) == (["21:30"], ["02:00"])
    # 96 quarter hours per picker: start and end, in the row and in the new-row template.
    assert text.count('<option value="23:45"') == 4
    assert text.count('<option value="00:15"') == 4


def test_a_utc_time_on_another_day_than_the_local_one_names_its_day(
    admin_client: Client, time_machine: time_machine.TimeMachineFixture
) -> None:
    time_machine.move_to(datetime(2026, 12, 1, 12, tzinfo=UTC), tick=False)
    campaign = CampaignFactory.create(
        brand__timezone="Europe/Berlin", brand__daily_budget=Decimal("1.00")
    )
    record_spend(campaign.pk, "1.00", at=datetime(2026, 12, 1, 12, tzinfo=UTC))

    text = page(admin_client, reverse("admin:ads_campaign_change", args=[campaign.pk]))

    assert "resets Wed 02 Dec 00:00 Europe/Berlin (Tue 01 Dec 23:00 UTC)" in text


def test_a_disabled_campaign_names_who_switched_it_off(admin_client: Client) -> None:
    campaign = CampaignFactory.create()
    set_campaigns_enabled([campaign.pk], enabled=False, actor="alice", at=NOW)

    text = page(admin_client, reverse("admin:ads_campaign_change", args=[campaign.pk]))

    assert "by alice on Fri 27 Nov 12:00 UTC (12:00 UTC)" in text
