"""The admin: every change goes through the services, audited with the user (SPEC 5, 9, 10)."""

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from ads.models import Brand, Campaign, CampaignStatusChange, SettingChange, SpendEvent
from ads.rules import PauseReason
from ads.services import record_spend, save_brand, save_campaign
from tests.conftest import NOW, admin_url
from tests.factories import BrandFactory, CampaignFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


def brand_form(
    brand: Brand, campaigns: Sequence[Campaign] = (), **changes: object
) -> dict[str, object]:
    data: dict[str, object] = {
        "name": brand.name,
        "timezone": brand.timezone,
        "currency": brand.currency,
        "is_active": "on" if brand.is_active else "",
        "daily_budget": str(brand.daily_budget),
        "monthly_budget": str(brand.monthly_budget),
        "campaigns-TOTAL_FORMS": str(len(campaigns)),
        "campaigns-INITIAL_FORMS": str(len(campaigns)),
        "campaigns-MIN_NUM_FORMS": "0",
        "campaigns-MAX_NUM_FORMS": "1000",
    }
    for n, campaign in enumerate(campaigns):
        data |= {
            f"campaigns-{n}-id": str(campaign.pk),
            f"campaigns-{n}-brand": str(brand.pk),
            f"campaigns-{n}-name": campaign.name,
            f"campaigns-{n}-is_enabled": "on" if campaign.is_enabled else "",
            f"campaigns-{n}-daily_budget": "",
            f"campaigns-{n}-schedule": "",
        }
    data |= changes
    return {k: v for k, v in data.items() if v != ""}


@pytest.fixture
def exhausted_campaign() -> Campaign:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10.00"))
    record_spend(campaign.pk, "10.00", at=NOW)
    return campaign


def test_raising_a_budget_resumes_campaigns_at_once_audited_with_the_user(
    admin_client: Client, admin_user: User, exhausted_campaign: Campaign
) -> None:
    brand = exhausted_campaign.brand

    response = admin_client.post(admin_url(brand), brand_form(brand, daily_budget="50.00"))

    assert response.status_code == 302
    exhausted_campaign.refresh_from_db()
    assert exhausted_campaign.is_active
    change = CampaignStatusChange.objects.latest("pk")
    assert (change.actor, change.reason) == (admin_user.username, "resumed (-brand_daily_budget)")
    setting = SettingChange.objects.get()
    assert (setting.actor, setting.field, setting.old_value, setting.new_value) == (
        admin_user.username,
        "daily_budget",
        "10.00",
        "50.00",
    )


def test_counters_cannot_be_edited_through_the_form(
    admin_client: Client, exhausted_campaign: Campaign
) -> None:
    brand = exhausted_campaign.brand

    response = admin_client.post(
        admin_url(brand), brand_form(brand, current_daily_spend="0", current_monthly_spend="0")
    )

    assert response.status_code == 302  # saved, the counters left out
    brand.refresh_from_db()
    assert brand.current_daily_spend == Decimal("10.00")


def test_disabling_a_campaign_on_its_page_pauses_it_for_that_user(
    admin_client: Client, admin_user: User
) -> None:
    campaign = CampaignFactory.create(evaluated_at=NOW)

    response = admin_client.post(
        admin_url(campaign), {"name": campaign.name, "daily_budget": "", "schedule": ""}
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert not campaign.is_enabled
    assert campaign.pause_reasons == (PauseReason.DISABLED,)
    assert CampaignStatusChange.objects.latest("pk").actor == admin_user.username


def test_campaign_inline_on_the_brand_page_saves_through_the_services(
    admin_client: Client, admin_user: User
) -> None:
    campaign = CampaignFactory.create(evaluated_at=NOW)
    form = brand_form(campaign.brand, [campaign])
    del form["campaigns-0-is_enabled"]

    response = admin_client.post(admin_url(campaign.brand), form)

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.pause_reasons == (PauseReason.DISABLED,)
    assert SettingChange.objects.get().field == "is_enabled"


def test_adding_a_campaign_inline_evaluates_it_at_once(admin_client: Client) -> None:
    brand = BrandFactory.create(daily_budget=Decimal(0))
    form = brand_form(brand)
    form |= {
        "campaigns-TOTAL_FORMS": "1",
        "campaigns-0-brand": str(brand.pk),
        "campaigns-0-name": "New search",
        "campaigns-0-is_enabled": "on",
    }

    response = admin_client.post(admin_url(brand), form)

    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.name, campaign.is_active) == ("New search", False)
    assert campaign.pause_reasons == (PauseReason.BRAND_DAILY_BUDGET,)


def test_enable_and_disable_actions_are_audited_with_the_user(
    admin_client: Client, admin_user: User
) -> None:
    campaigns = CampaignFactory.create_batch(2, evaluated_at=NOW)
    url = reverse("admin:ads_campaign_changelist")

    disabled = admin_client.post(
        url, {"action": "disable", "_selected_action": [c.pk for c in campaigns]}
    )
    assert disabled.status_code == 302
    assert not Campaign.objects.filter(is_active=True).exists()
    enabled = admin_client.post(url, {"action": "enable", "_selected_action": [campaigns[0].pk]})

    assert enabled.status_code == 302

    assert list(Campaign.objects.order_by("pk").values_list("is_active", flat=True)) == [
        True,
        False,
    ]
    assert CampaignStatusChange.objects.filter(actor=admin_user.username).count() == 3
    assert SettingChange.objects.filter(field="is_enabled", actor=admin_user.username).count() == 3


def test_campaign_page_says_why_it_is_not_running(
    admin_client: Client, exhausted_campaign: Campaign
) -> None:
    response = admin_client.get(admin_url(exhausted_campaign))

    assert (
        "<strong>Brand daily budget exhausted</strong>: spent €10.00 of €10.00 today; "
        "resets Sat 28 Nov 00:00 UTC (00:00 UTC)" in response.content.decode()
    )
    # Recent changes, in the same words as the reasons (not the codes of the API).
    assert "Paused: Brand daily budget exhausted" in response.content.decode()


def test_brand_list_shows_spend_against_budget(
    admin_client: Client, exhausted_campaign: Campaign
) -> None:
    response = admin_client.get(reverse("admin:ads_brand_changelist"))

    assert "€10.00 / €10.00 (exhausted)" in response.content.decode()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timezone", "Mars/Olympus", "is not a known IANA time zone"),
        ("daily_budget", "-1", "greater than or equal to 0"),
        ("daily_budget", "1.005", "EUR (Euro) amounts have at most 2 decimal places"),
        ("monthly_budget", "NaN", "Enter a number"),
    ],
)
def test_bad_brand_input_names_the_field_and_writes_nothing(
    admin_client: Client, field: str, value: str, message: str
) -> None:
    brand = BrandFactory.create()

    response = admin_client.post(admin_url(brand), brand_form(brand, (), **{field: value}))

    assert response.status_code == 200
    assert message in str(response.context["adminform"].form.errors[field])
    assert not SettingChange.objects.exists()
    assert Brand.objects.get().daily_budget == brand.daily_budget


@pytest.mark.parametrize("model", ["spendevent", "campaignstatuschange", "settingchange"])
def test_ledger_and_audit_are_read_only_even_for_superusers(
    admin_client: Client, exhausted_campaign: Campaign, model: str
) -> None:
    SettingChange.objects.create(
        changed_at=NOW, actor="x", object_type="brand", object_id=1, object_repr="b", field="f"
    )
    model_class = {"spendevent": SpendEvent, "campaignstatuschange": CampaignStatusChange}.get(
        model, SettingChange
    )
    row = model_class._default_manager.get()

    assert admin_client.get(reverse(f"admin:ads_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:ads_{model}_add")).status_code == 403
    assert admin_client.post(reverse(f"admin:ads_{model}_delete", args=[row.pk])).status_code == 403
    page = admin_client.get(reverse(f"admin:ads_{model}_change", args=[row.pk]))
    assert 'name="_save"' not in page.content.decode()


def test_viewer_sees_but_cannot_change(client: Client, exhausted_campaign: Campaign) -> None:
    client.force_login(UserFactory.create(groups=["Viewers"]))
    brand = exhausted_campaign.brand

    assert client.get(reverse("admin:ads_brand_changelist")).status_code == 200
    assert client.get(reverse("admin:ads_spendevent_changelist")).status_code == 200
    response = client.post(admin_url(brand), brand_form(brand, daily_budget="99"))

    assert response.status_code == 403
    assert Brand.objects.get().daily_budget == Decimal("10.00")


def test_budget_manager_changes_budgets_but_not_the_ledger(
    client: Client, exhausted_campaign: Campaign
) -> None:
    client.force_login(UserFactory.create(groups=["Budget managers"]))
    brand = exhausted_campaign.brand

    response = client.post(admin_url(brand), brand_form(brand, daily_budget="99"))

    assert response.status_code == 302
    assert Brand.objects.get().daily_budget == Decimal("99")
    event = SpendEvent.objects.get()
    assert client.post(reverse("admin:ads_spendevent_delete", args=[event.pk])).status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "admin:ads_brand_changelist",
        "admin:ads_campaign_changelist",
        "admin:ads_schedule_changelist",
        "admin:ads_spendevent_changelist",
        "admin:ads_campaignstatuschange_changelist",
        "admin:ads_settingchange_changelist",
        "admin:ads_brand_add",
        "admin:ads_campaign_add",
    ],
)
def test_admin_pages_render_with_search(
    admin_client: Client, exhausted_campaign: Campaign, url: str
) -> None:
    response = admin_client.get(reverse(url), {"q": "Brand"} if "changelist" in url else {})

    assert response.status_code == 200


def test_saving_a_brand_read_before_a_spend_keeps_that_spend() -> None:
    campaign = CampaignFactory.create(brand__daily_budget=Decimal("10.00"), evaluated_at=NOW)
    on_the_page = Brand.objects.get()  # what the admin form was built from
    record_spend(campaign.pk, "10.00", at=NOW)  # commits meanwhile

    on_the_page.name = "Renamed"
    save_brand(on_the_page, changed_fields=["name"], actor="alice", at=NOW)

    brand = Brand.objects.get()
    assert (brand.name, brand.current_daily_spend) == ("Renamed", Decimal("10.00"))
    assert brand.current_monthly_spend == Decimal("10.00")
    assert not Campaign.objects.get().is_active


def test_saving_a_campaign_read_before_a_spend_keeps_that_spend() -> None:
    campaign = CampaignFactory.create(daily_budget=Decimal("10.00"), evaluated_at=NOW)
    on_the_page = Campaign.objects.get()
    record_spend(campaign.pk, "10.00", at=NOW)

    on_the_page.name = "Renamed"
    save_campaign(on_the_page, changed_fields=["name"], actor="alice", at=NOW)

    campaign.refresh_from_db()
    assert (campaign.name, campaign.daily_spend) == ("Renamed", Decimal("10.00"))
    assert campaign.pause_reasons == (PauseReason.CAMPAIGN_DAILY_BUDGET,)


def test_editing_a_campaign_inline_after_local_midnight_keeps_the_new_day_at_zero(
    admin_client: Client, time_machine: time_machine.TimeMachineFixture
) -> None:
    campaign = CampaignFactory.create(daily_budget=Decimal("10.00"))
    record_spend(campaign.pk, "10.00", at=NOW)  # Friday
    time_machine.move_to(NOW + timedelta(days=1), tick=False)  # Saturday, no reset ran yet
    campaign.refresh_from_db()
    form = brand_form(campaign.brand, [campaign])
    form["campaigns-0-name"] = "Renamed"
    form["campaigns-0-daily_budget"] = "10.00"

    response = admin_client.post(admin_url(campaign.brand), form)

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.daily_spend, campaign.is_active) == (
        "Renamed", Decimal(0), True,
    )  # fmt: skip
