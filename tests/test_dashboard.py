"""The admin's front page, brand list standing and the ledger's CSV export (issue 5)."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from ads.models import Brand, Campaign
from ads.rules import Band, Pacing, band, pacing
from ads.services import record_spend, refresh_campaign_states, set_campaigns_enabled
from tests.conftest import NOW
from tests.factories import BrandFactory, CampaignFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


def brand_spending(name: str, spend: str, budget: str = "100", currency: str = "EUR") -> Campaign:
    campaign = CampaignFactory.create(
        name=f"{name} search",
        brand__name=name,
        brand__currency=currency,
        brand__daily_budget=Decimal(budget),
        evaluated_at=NOW - timedelta(hours=2),  # running first
    )
    record_spend(campaign.pk, spend, at=NOW - timedelta(hours=1))
    return campaign


@pytest.mark.parametrize(
    ("spend", "expected_band", "expected_pacing"),
    [
        ("10", Band.OK, Pacing.BEHIND),
        ("45", Band.OK, Pacing.ON_PACE),
        ("74.99", Band.OK, Pacing.AHEAD),
        ("75", Band.WARN, Pacing.AHEAD),
        ("99.99", Band.WARN, Pacing.AHEAD),
        ("100", Band.EXHAUSTED, Pacing.EXHAUSTED),
    ],
)
def test_bands_and_pacing_at_midday(
    spend: str, expected_band: Band, expected_pacing: Pacing
) -> None:
    amount, budget, half_day = Decimal(spend), Decimal(100), Decimal("0.5")

    assert band(amount, budget) == expected_band
    assert pacing(amount, budget, half_day) == expected_pacing


def test_brand_list_shows_bars_pacing_money_left_and_local_time(admin_client: Client) -> None:
    brand_spending("Tokyo Tea", "82")
    Brand.objects.update(timezone="Asia/Tokyo")  # 21:00 there: 88 % of its day has passed
    refresh_campaign_states(at=NOW, actor="test")

    page = admin_client.get(reverse("admin:ads_brand_changelist")).content.decode()

    assert 'class="budget-bar band-warn"' in page
    assert 'aria-valuenow="82"' in page
    assert "€82.00 / €100.00 (82 %)" in page
    assert '€18.00 left · <span class="pacing pacing-on_pace">on pace</span>' in page
    assert "Fri 21:00 Asia/Tokyo" in page


def test_dashboard_answers_the_morning_questions(admin_client: Client) -> None:
    near = brand_spending("Near", "80")
    brand_spending("Calm", "5")
    over = brand_spending("Over", "100")
    disabled = CampaignFactory.create(name="Switched off", brand=near.brand, evaluated_at=NOW)
    set_campaigns_enabled([disabled.pk], enabled=False, actor="alice", at=NOW)

    page = admin_client.get(reverse("admin:index")).content.decode()

    near_section = page.split('id="near-budget"')[1].split("</section>")[0]
    assert "Over" in near_section
    assert "Near" in near_section
    assert "Calm" not in near_section
    assert near_section.index("Over") < near_section.index("Near")  # most spent first
    pauses = page.split('id="recent-pauses"')[1].split("</section>")[0]
    assert over.name in pauses
    assert "Brand daily budget exhausted" in pauses  # why, in people's words
    assert "brand_daily_budget" not in pauses
    assert "Switched off" in pauses
    assert "alice" in pauses
    alerts = page.split('id="alerts"')[1].split("</section>")[0]
    assert "Over</a> reached 100 % of its daily budget" in alerts
    assert "Near</a> reached 80 % of its daily budget" in alerts


def test_dashboard_draws_spend_per_hour_as_svg_without_external_resources(
    admin_client: Client,
) -> None:
    campaign = brand_spending("Hourly", "3")
    record_spend(campaign.pk, "6", at=NOW.replace(hour=9, minute=30))

    page = admin_client.get(reverse("admin:index")).content.decode()

    chart = page.split('<svg class="hour-chart"')[1].split("</svg>")[0]
    assert chart.count('class="amount"') == 24
    assert "<title>09:00–09:59 UTC: €6.00</title>" in chart
    assert "<title>11:00–11:59 UTC: €3.00</title>" in chart
    assert 'class="slot current"' in chart  # 12:00, now
    assert "https://" not in page
    assert "http://" not in page.replace("http://www.w3.org", "")


def hour_charts(page: str) -> dict[str, str]:
    """Each per-currency chart of the dashboard (its heading, bars and caption), by
    currency code, in the order shown."""
    section = page.split('id="per-hour"')[1].split("</section>")[0]
    figures = section.split('<figure class="hour-chart-currency" data-currency="')[1:]
    return {figure[:3]: figure.split("</figure>")[0] for figure in figures}


def test_spend_per_hour_is_charted_per_currency_and_never_added_across_currencies(
    admin_client: Client,
) -> None:
    paris = brand_spending("Paris", "3")  # at 11:xx
    record_spend(paris.pk, "6", at=NOW.replace(hour=9, minute=30))
    brand_spending("Boston", "4.50", currency="USD")
    tokyo = brand_spending("Tokyo", "1200", budget="20000", currency="JPY")
    record_spend(tokyo.pk, "800", at=NOW.replace(hour=9))
    record_spend(tokyo.pk, "500", at=NOW.replace(hour=11, minute=50))

    page = admin_client.get(reverse("admin:index")).content.decode()

    charts = hour_charts(page)
    assert list(charts) == ["EUR", "JPY", "USD"]
    euro, yen, dollar = charts["EUR"], charts["JPY"], charts["USD"]
    # Each total is that currency's spend only: 3 + 6 euros, 1,200 + 800 + 500 yen.
    assert 'EUR – Euro: <span class="chart-total">€9.00</span> today' in euro
    assert 'JPY – Japanese Yen: <span class="chart-total">¥2,500</span> today' in yen
    assert 'USD – US Dollar: <span class="chart-total">$4.50</span> today' in dollar
    # Each has its own scale: its own tallest hour is a full-height bar.
    assert 'Tallest hour: <span class="chart-top">€6.00</span>' in euro
    assert 'Tallest hour: <span class="chart-top">¥1,700</span>' in yen
    assert 'Tallest hour: <span class="chart-top">$4.50</span>' in dollar
    assert "<title>09:00–09:59 UTC: ¥800</title>" in yen
    assert "<title>11:00–11:59 UTC: ¥1,700</title>" in yen
    assert 'y="0" width="16" height="120" class="amount"' in yen
    for code, chart in charts.items():
        others = {"EUR": "€", "JPY": "¥", "USD": "$"}
        assert [s for c, s in others.items() if c != code and s in chart] == [], code
    assert "all brands" not in page
    for mixed in ("2,513.50", "2513.5", "2,509", "2,504.50"):  # sums across currencies
        assert mixed not in page


def test_alerts_and_brands_near_budget_read_in_each_brands_currency(
    admin_client: Client,
) -> None:
    brand_spending("Tokyo", "1800", budget="2000", currency="JPY")  # 90 %
    brand_spending("Boston", "4.50", budget="5", currency="USD")  # 90 %

    page = admin_client.get(reverse("admin:index")).content.decode()

    near = page.split('id="near-budget"')[1].split("</section>")[0]
    assert "¥1,800 / ¥2,000 (90 %)" in near
    assert "¥200 left" in near
    assert "$4.50 / $5.00 (90 %)" in near
    alerts = page.split('id="alerts"')[1].split("</section>")[0]
    assert "Tokyo</a> reached 80 % of its daily budget (¥1,800 of ¥2,000)" in alerts
    assert "Boston</a> reached 80 % of its daily budget ($4.50 of $5.00)" in alerts


def test_no_spend_today_says_so_instead_of_an_empty_chart(admin_client: Client) -> None:
    BrandFactory.create()

    page = admin_client.get(reverse("admin:index")).content.decode()

    section = page.split('id="per-hour"')[1].split("</section>")[0]
    assert "No spend recorded today (UTC)." in section
    assert 'class="hour-chart"' not in section


@pytest.mark.django_db(transaction=True)  # Beat's scheduler manages its own connections
def test_dashboard_lists_the_periodic_tasks_and_their_last_run(admin_client: Client) -> None:
    from ad_budget_project.celery import app
    from ads.beat import DefaultsOnceScheduler

    DefaultsOnceScheduler(app=app)

    page = admin_client.get(reverse("admin:index")).content.decode()

    periodic = page.split('id="periodic"')[1].split("</section>")[0]
    assert "reset-daily-budgets" in periodic
    assert "0,15,30,45 * * * *" in periodic
    assert "never" in periodic


def test_viewer_sees_the_dashboard(client: Client) -> None:
    brand_spending("Over", "100")
    client.force_login(UserFactory.create(groups=["Viewers"]))

    assert 'id="near-budget"' in client.get(reverse("admin:index")).content.decode()


def test_ledger_csv_export_follows_the_filters(admin_client: Client) -> None:
    wanted = brand_spending("Wanted", "1.50")
    brand_spending("Other", "2.00")
    record_spend(wanted.pk, "0.25", idempotency_key="=HYPERLINK(1)", at=NOW)
    url = reverse("admin:ads_spendevent_export")

    response = admin_client.get(url, {"brand__id__exact": str(wanted.brand_id)})

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["id", "occurred_at", "recorded_at"]
    lines = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert sorted(line["amount"] for line in lines) == ["0.25", "1.50"]
    assert {line["brand__name"] for line in lines} == {"Wanted"}
    assert "'=HYPERLINK(1)" in [line["idempotency_key"] for line in lines]


def export(client: Client) -> list[dict[str, str]]:
    response = client.get(reverse("admin:ads_spendevent_export"))
    assert isinstance(response, StreamingHttpResponse)
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_ledger_csv_names_each_amounts_currency_and_keeps_the_amount_a_plain_number(
    admin_client: Client,
) -> None:
    brand_spending("Paris", "1234.50")
    brand_spending("Tokyo", "1200", budget="20000", currency="JPY")
    brand_spending("Kuwait", "1.505", budget="10.000", currency="KWD")

    lines = export(admin_client)

    header = list(lines[0])
    assert header[header.index("amount") + 1] == "currency"  # next to the amount
    assert sorted((line["brand__name"], line["amount"], line["currency"]) for line in lines) == [
        ("Kuwait", "1.505", "KWD"),
        ("Paris", "1234.50", "EUR"),
        ("Tokyo", "1200.00", "JPY"),
    ]


def test_ledger_page_links_to_the_export_with_its_filters(admin_client: Client) -> None:
    campaign = brand_spending("Wanted", "1.50")
    url = reverse("admin:ads_spendevent_changelist")

    page = admin_client.get(url, {"source__exact": "cli"}).content.decode()

    assert f'href="{reverse("admin:ads_spendevent_export")}?source__exact=cli"' in page
    assert campaign.name in page


def test_ledger_export_needs_a_login(client: Client) -> None:
    response = client.get(reverse("admin:ads_spendevent_export"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_budget_manager_cannot_reach_brands_without_permission_but_sees_the_ledger(
    client: Client,
) -> None:
    BrandFactory.create()
    client.force_login(UserFactory.create(groups=["Budget managers"]))

    assert client.get(reverse("admin:ads_spendevent_export")).status_code == 200


def test_export_with_bad_filters_goes_back_to_the_ledger(admin_client: Client) -> None:
    response = admin_client.get(
        reverse("admin:ads_spendevent_export"), {"occurred_at__year": "abc"}
    )

    assert response.status_code == 302
    assert response["Location"].endswith("/admin/ads/spendevent/?e=1")


def test_dashboard_shows_only_what_the_person_may_see(client: Client) -> None:
    brand_spending("Over", "100")
    user = UserFactory.create()
    user.user_permissions.add(Permission.objects.get(codename="view_brand"))
    client.force_login(user)

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="near-budget"' in page
    assert 'id="recent-pauses"' not in page
    assert 'id="alerts"' not in page
    assert 'class="hour-chart"' not in page
