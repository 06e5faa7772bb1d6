"""The admin and each brand's currency (issue 14): budgets held to the currency's minor
unit, the currency fixed once a brand has spend, every amount read in its currency.

Forms are read from the pages the admin serves and posted back as a browser would.
"""

import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from ads.models import Brand, Campaign, SettingChange
from ads.services import record_spend
from tests.conftest import NOW, admin_url
from tests.factories import BrandFactory, CampaignFactory
from tests.html_forms import FormData, read_form

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


def open_page(client: Client, url: str, form_id: str) -> FormData:
    response = client.get(url)
    assert response.status_code == 200
    return read_form(response.content.decode(), form_id)


def errors_of(response: Any, field: str) -> list[str]:
    """The errors the page shows on the main form's field (`response` from the test
    client, whose type the stubs keep private)."""
    return list(response.context["adminform"].form.errors.get(field, []))


def spent(currency: str, amount: str = "1200", budget: str = "20000") -> Campaign:
    """A campaign of a brand in `currency` that has spent `amount` today."""
    campaign = CampaignFactory.create(
        name="Search",
        brand__name="Brand",
        brand__currency=currency,
        brand__daily_budget=Decimal(budget),
        brand__monthly_budget=Decimal(budget) * 30,
        evaluated_at=NOW,
    )
    record_spend(campaign.pk, amount, at=NOW)
    return campaign


# --- Budgets in the currency's minor unit -----------------------------------------------


@pytest.mark.parametrize(
    ("currency", "budget", "refusal"),
    [
        ("JPY", "10.50", "JPY (Japanese Yen) has no minor unit: give a whole amount (got 10.50)"),
        ("EUR", "10.505", "EUR (Euro) amounts have at most 2 decimal places (got 10.505)"),
        ("KRW", "1000.5", "KRW (South Korean Won) has no minor unit: give a whole amount"),
    ],
)
def test_a_budget_finer_than_its_currency_is_refused_naming_the_currency(
    admin_client: Client, currency: str, budget: str, refusal: str
) -> None:
    brand = BrandFactory.create(currency=currency)
    data = open_page(admin_client, admin_url(brand), "brand_form")
    data["daily_budget"] = [budget]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 200
    assert refusal in " ".join(errors_of(response, "daily_budget"))
    assert Brand.objects.get().daily_budget == Decimal("100.00")
    assert not SettingChange.objects.exists()


def test_a_kwd_budget_keeps_its_three_decimal_places(
    admin_client: Client, admin_user: User
) -> None:
    brand = BrandFactory.create(currency="KWD")
    data = open_page(admin_client, admin_url(brand), "brand_form")
    data["daily_budget"] = ["10.505"]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 302
    assert Brand.objects.get().daily_budget == Decimal("10.505")
    audit = SettingChange.objects.get()
    assert (audit.field, audit.old_value, audit.new_value) == ("daily_budget", "100.00", "10.505")


def test_a_yen_campaign_budget_with_a_fraction_is_refused_on_its_page(
    admin_client: Client,
) -> None:
    campaign = CampaignFactory.create(brand__currency="JPY", daily_budget=Decimal(500))
    data = open_page(admin_client, admin_url(campaign), "campaign_form")
    data["daily_budget"] = ["10.5"]

    response = admin_client.post(admin_url(campaign), data)

    assert response.status_code == 200
    assert errors_of(response, "daily_budget") == [
        "JPY (Japanese Yen) has no minor unit: give a whole amount (got 10.5)"
    ]
    assert Campaign.objects.get().daily_budget == Decimal(500)


def test_a_yen_campaign_budget_with_a_fraction_is_refused_in_the_brands_page(
    admin_client: Client,
) -> None:
    campaign = CampaignFactory.create(brand__currency="JPY", daily_budget=Decimal(500))
    data = open_page(admin_client, admin_url(campaign.brand), "brand_form")
    data["campaigns-0-daily_budget"] = ["10.5"]

    response = admin_client.post(admin_url(campaign.brand), data)

    assert response.status_code == 200
    [row] = response.context["inline_admin_formsets"][0].formset.forms
    assert row.errors["daily_budget"] == [
        "JPY (Japanese Yen) has no minor unit: give a whole amount (got 10.5)"
    ]
    assert Campaign.objects.get().daily_budget == Decimal(500)


def test_a_new_brand_is_saved_in_the_currency_chosen(admin_client: Client) -> None:
    url = reverse("admin:ads_brand_add")
    data = open_page(admin_client, url, "brand_form")
    assert data["currency"] == ["EUR"]  # DEFAULT_CURRENCY is offered first
    data |= {
        "name": ["Tokyo Tea"],
        "timezone": ["Asia/Tokyo"],
        "currency": ["JPY"],
        "daily_budget": ["50000"],
        "monthly_budget": ["1500000"],
    }

    response = admin_client.post(url, data)

    assert response.status_code == 302
    brand = Brand.objects.get()
    assert (brand.name, brand.currency, brand.daily_budget) == ("Tokyo Tea", "JPY", Decimal(50000))


def test_the_currency_select_offers_active_currencies_by_code_and_name(
    admin_client: Client,
) -> None:
    page = admin_client.get(reverse("admin:ads_brand_add")).content.decode()

    select = page.split('name="currency"')[1].split("</select>")[0]
    assert '<option value="JPY">JPY – Japanese Yen</option>' in select
    assert '<option value="KWD">KWD – Kuwaiti Dinar</option>' in select
    assert '<option value="EUR" selected>EUR – Euro</option>' in select
    assert 'value="DEM"' not in select  # retired


def test_a_post_without_the_currency_keeps_the_brands_own(admin_client: Client) -> None:
    brand = BrandFactory.create(currency="JPY")
    data = open_page(admin_client, admin_url(brand), "brand_form")
    del data["currency"], data["initial-currency"]  # a script's form, not a browser's
    data["daily_budget"] = ["5000"]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 302
    saved = Brand.objects.get()
    assert (saved.currency, saved.daily_budget) == ("JPY", Decimal(5000))
    assert list(SettingChange.objects.values_list("field", flat=True)) == ["daily_budget"]


def test_an_empty_currency_is_refused(admin_client: Client) -> None:
    brand = BrandFactory.create(currency="JPY")
    data = open_page(admin_client, admin_url(brand), "brand_form")
    data["currency"] = [""]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 200
    assert errors_of(response, "currency") == ["This field is required."]
    assert Brand.objects.get().currency == "JPY"


# --- The currency is fixed once a brand has spend ---------------------------------------


def test_a_brand_without_spend_changes_currency_audited_with_the_user(
    admin_client: Client, admin_user: User
) -> None:
    brand = BrandFactory.create()
    data = open_page(admin_client, admin_url(brand), "brand_form")
    data["currency"] = ["JPY"]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 302
    assert Brand.objects.get().currency == "JPY"
    audit = SettingChange.objects.get()
    assert (audit.actor, audit.field, audit.old_value, audit.new_value) == (
        admin_user.username,
        "currency",
        "EUR",
        "JPY",
    )


FIXED = (
    "The currency stays EUR: this brand has spend in EUR, and a ledger or budget must not "
    "mix currencies. To pay in {new}, create a new brand (ad platforms also make a change "
    "of currency a new account)."
)


def test_a_brand_with_spend_shows_its_currency_read_only_with_the_reason(
    admin_client: Client,
) -> None:
    brand = spent("EUR", "12.50", budget="100").brand

    page = admin_client.get(admin_url(brand)).content.decode()

    select = page.split('<select name="currency"')[1].split(">")[0]
    assert "disabled" in select
    assert FIXED.format(new="another currency") in page
    assert "currency" not in read_form(page, "brand_form")  # a browser sends nothing
    # The budgets now read and step in euros.
    daily = page.split('name="daily_budget"')[1].split("</div>")[0]
    assert 'step="0.01"' in daily
    assert '<abbr class="money-currency" title="Euro">EUR</abbr>' in daily


def test_a_yen_brand_with_spend_has_whole_yen_budget_boxes(admin_client: Client) -> None:
    campaign = spent("JPY", budget="20000")
    Campaign.objects.update(daily_budget=Decimal(5000))

    page = admin_client.get(admin_url(campaign.brand)).content.decode()

    def box(name: str) -> str:
        return page.split(f'<input type="number" name="{name}"')[1].split(">")[0]

    assert 'value="20000"' in box("daily_budget")  # not 20000.00
    assert 'step="1"' in box("daily_budget")
    assert 'value="5000"' in box("campaigns-0-daily_budget")
    assert 'step="1"' in box("campaigns-0-daily_budget")
    assert '<abbr class="money-currency" title="Japanese Yen">JPY</abbr>' in page


def test_the_brand_list_filters_by_the_currencies_brands_use(admin_client: Client) -> None:
    BrandFactory.create(currency="JPY")
    BrandFactory.create(currency="KWD")

    page = admin_client.get(reverse("admin:ads_brand_changelist")).content.decode()

    currencies = page.split("By currency")[1].split("</ul>")[0]
    assert "?currency=JPY" in currencies
    assert "?currency=KWD" in currencies
    assert "?currency=EUR" not in currencies  # no brand pays in euros
    assert len(admin_client.get(reverse("admin:ads_brand_changelist"), {"currency": "JPY"})
               .context["cl"].result_list) == 1  # fmt: skip


def test_a_forged_currency_change_of_a_brand_with_spend_is_refused_and_nothing_written(
    admin_client: Client,
) -> None:
    brand = spent("EUR", "12.50", budget="100").brand
    data = open_page(admin_client, admin_url(brand), "brand_form")
    data |= {"currency": ["JPY"], "daily_budget": ["150.00"]}

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 200
    assert errors_of(response, "currency") == [FIXED.format(new="JPY")]
    saved = Brand.objects.get()
    assert (saved.currency, saved.daily_budget) == ("EUR", Decimal(100))
    assert not SettingChange.objects.exists()


def test_a_currency_change_after_the_first_spend_arrived_is_refused_and_nothing_written(
    admin_client: Client,
) -> None:
    campaign = CampaignFactory.create(evaluated_at=NOW)
    brand = campaign.brand
    data = open_page(admin_client, admin_url(brand), "brand_form")  # no spend: a select
    record_spend(campaign.pk, "5.00", at=NOW)  # meanwhile, the first spend
    data["currency"] = ["JPY"]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 200
    assert errors_of(response, "currency") == [FIXED.format(new="JPY")]
    assert Brand.objects.get().currency == "EUR"
    assert not SettingChange.objects.exists()


def test_a_brand_with_spend_saves_its_other_settings(admin_client: Client) -> None:
    brand = spent("JPY").brand
    data = open_page(admin_client, admin_url(brand), "brand_form")
    data["daily_budget"] = ["30000"]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 302
    saved = Brand.objects.get()
    assert (saved.currency, saved.daily_budget) == ("JPY", Decimal(30000))


# --- Every amount in its currency -------------------------------------------------------


def test_every_amount_in_the_admin_reads_in_the_brands_currency(admin_client: Client) -> None:
    campaign = spent("JPY", "1800", budget="2000")  # 90 %: alerts at 50 % and 80 %
    Campaign.objects.update(daily_budget=Decimal(5000))
    brand = campaign.brand
    event = brand.spend_events.get()
    alert = brand.alerts.get(threshold=80)

    def page(name: str, *args: object) -> str:
        response = admin_client.get(reverse(f"admin:ads_{name}", args=args))
        assert response.status_code == 200
        return response.content.decode()

    brands = page("brand_changelist")
    assert 'class="money-currency brand-currency" title="Japanese Yen">JPY</abbr>' in brands
    assert "¥1,800 / ¥2,000 (90 %)" in brands
    brand_page = page("brand_change", brand.pk)
    assert '<div class="readonly">¥1,800</div>' in brand_page  # the counters
    assert re.search(r'"field-spend_today">\s*<p>¥1,800</p>', brand_page)  # the inline row
    campaign_row = page("campaign_changelist")
    assert "¥1,800 / ¥5,000 (36 %)" in campaign_row
    campaign_page = page("campaign_change", campaign.pk)
    assert "brand ¥200 left today, own budget ¥3,200 left" in campaign_page
    daily = campaign_page.split('name="daily_budget"')[1].split("</div>")[0]
    assert 'step="1"' in daily
    assert ">JPY</abbr>" in daily
    assert '<td class="field-amount_text">¥1,800</td>' in page("spendevent_changelist")
    assert '<div class="readonly">¥1,800</div>' in page("spendevent_change", event.pk)
    alerts = page("budgetalert_changelist")
    assert '<td class="field-spend_text">¥1,800</td>' in alerts
    assert '<td class="field-budget_text">¥2,000</td>' in alerts
    assert '<div class="readonly">¥2,000</div>' in page("budgetalert_change", alert.pk)


def test_why_not_running_reads_in_the_brands_currency(admin_client: Client) -> None:
    campaign = spent("USD", "55.00", budget="50")

    page = admin_client.get(admin_url(campaign)).content.decode()

    assert "spent $55.00 of $50.00 ($5.00 over) today" in page
