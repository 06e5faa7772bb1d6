"""The admin in a real Chromium, as an ad-ops person uses it (issue 5).

Playwright drives Debian's Chromium (`apt-get install chromium`) against a live test
server. Screenshots land in var/screenshots/ (git-ignored) for a person to look at.
"""

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from ads import tasks
from ads.models import Campaign, SpendEvent
from ads.roles import sync_groups
from tests.factories import BrandFactory, CampaignFactory, UserFactory

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = settings.VAR_DIR / "screenshots"
PASSWORD = "a-long-browser-password"

# Chromium and a live server.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.process]


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """A Chromium per test: Playwright's sync API runs an event loop in this thread
    while it lives, so it must not outlive the test."""
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # With that loop running, Django takes the test's own (synchronous, safe) ORM
    # calls for async code. Per test only: the deploy check rightly refuses this.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        # Connections the test opened while the loop ran are kept per context, out of
        # reach of the database teardown: close them here.
        connections.close_all()
        chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    yield tab
    context.close()
    own = urlsplit(live_server.url).netloc
    external = [url for url in requested if urlsplit(url).netloc not in (own, "")]
    assert external == [], "pages must not reach outside the server"


def log_in(page: Page, base: str, username: str) -> None:
    """With the keyboard only: type, Tab, type, Enter."""
    page.goto(f"{base}/admin/login/")
    page.focus("#id_username")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#site-name")).to_contain_text("Ad Budget Guard")


def add_in_admin(page: Page, url: str, fields: dict[str, str | tuple[str]]) -> None:
    """Open an add page, type into the text boxes, pick in the lists (a 1-tuple: the
    option a person reads), and save."""
    page.goto(url)
    for selector, value in fields.items():
        if isinstance(value, tuple):
            page.select_option(selector, label=value[0])
        else:
            page.fill(selector, value)
    page.click("input[name=_save]")


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def test_an_ad_ops_day_in_the_browser(page: Page, live_server: LiveServer) -> None:
    base = live_server.url
    User.objects.create_superuser("ops", password=PASSWORD)
    log_in(page, base, "ops")

    # A schedule that is open all day, every day (00:00 to 00:00 is 24 hours).
    add_in_admin(page, f"{base}/admin/ads/schedule/add/", {
        "#id_name": "Always", "#id_windows-0-start": ("00:00",), "#id_windows-0-end": ("00:00",),
    })  # fmt: skip
    expect(page.locator("#result_list")).to_contain_text("Every day 00:00–00:00 (24 h)")

    add_in_admin(page, f"{base}/admin/ads/brand/add/", {
        "#id_name": "Browser Brand", "#id_timezone": "Europe/Paris", "#id_daily_budget": "10.00",
        "#id_monthly_budget": "100.00", "#id_contact_email": "ops@example.com",
    })  # fmt: skip
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    add_in_admin(page, f"{base}/admin/ads/campaign/add/", {
        "#id_brand": ("Browser Brand",), "#id_name": "Browser search",
        "#id_schedule": ("Always",),
    })  # fmt: skip
    campaign = Campaign.objects.get(name="Browser search")
    assert campaign.is_active

    # Spend arrives through the command; the brand's bar turns amber at 80 %.
    call_command("simulate_spend", str(campaign.pk), "8.00")
    page.goto(f"{base}/admin/ads/brand/")
    bar = page.locator(".budget-bar").first
    expect(bar).to_have_class("budget-bar band-warn")
    expect(bar).to_have_attribute("aria-valuenow", "80")
    expect(page.locator("#result_list")).to_contain_text("€8.00 / €10.00 (80 %)")

    call_command("simulate_spend", str(campaign.pk), "2.00")
    page.reload()
    expect(page.locator(".budget-bar").first).to_have_class("budget-bar band-exhausted")
    shoot(page, "brand-list")
    page.goto(f"{base}/admin/")
    expect(page.locator("#dashboard")).to_contain_text("€10.00 / €10.00 (exhausted)")
    shoot(page, "dashboard")
    page.goto(f"{base}/admin/ads/campaign/{campaign.pk}/change/")
    expect(page.locator(".why-not-running")).to_contain_text(
        "Brand daily budget exhausted: spent €10.00 of €10.00 today; resets"
    )
    shoot(page, "campaign-page")

    # Raising the budget in the browser resumes the campaign at once.
    page.goto(f"{base}/admin/ads/brand/{campaign.brand_id}/change/")
    page.fill("#id_daily_budget", "20.00")
    page.click("input[name=_save]")
    page.goto(f"{base}/admin/ads/campaign/{campaign.pk}/change/")
    expect(page.locator(".field-why_not_running")).to_contain_text("It is running")

    # Disabled by a person, it stays paused through enforcement.
    page.goto(f"{base}/admin/ads/campaign/")
    page.check(f"input[name=_selected_action][value='{campaign.pk}']")
    page.select_option("select[name=action]", "disable")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("1 campaign(s) disabled")
    tasks.enforce_budget_limits()
    page.goto(f"{base}/admin/ads/campaign/{campaign.pk}/change/")
    expect(page.locator(".why-not-running")).to_contain_text("Disabled by a person: by ops on")

    page.goto(f"{base}/admin/")
    expect(page.locator("section:has(#recent-pauses)")).to_contain_text("Browser search")
    expect(page.locator("#dashboard")).to_contain_text("Browser Brand reached 100 % of its daily")
    expect(page.locator("section:has(#recent-pauses)")).to_contain_text("Disabled by a person")

    # The ledger, exported as CSV.
    page.goto(f"{base}/admin/ads/spendevent/")
    with page.expect_download() as download_info:
        page.click("text=Export CSV")
    lines = Path(download_info.value.path()).read_text().splitlines()
    assert len(lines) == 1 + SpendEvent.objects.count() == 3
    assert lines[0].startswith("id,occurred_at,recorded_at,brand_id,brand__name")
    assert ",amount,currency," in lines[0]
    assert all(",EUR," in line for line in lines[1:])


def test_a_viewer_sees_budgets_but_gets_no_save_button(page: Page, live_server: LiveServer) -> None:
    sync_groups(apps)  # the roles' data migration is undone by a transactional test's flush
    brand = BrandFactory.create(name="Look Only")
    # The role is enough: no "staff status" to tick as well.
    viewer = UserFactory.create(username="viewer", is_staff=False, groups=["Viewers"])
    viewer.set_password(PASSWORD)
    viewer.save()
    log_in(page, live_server.url, "viewer")

    page.goto(f"{live_server.url}/admin/ads/brand/{brand.pk}/change/")

    expect(page.locator("#content")).to_contain_text("Look Only")
    expect(page.locator("input[name=_save]")).to_have_count(0)


def test_the_dashboard_shows_each_brands_own_local_time(
    page: Page, live_server: LiveServer
) -> None:
    zones = ("Asia/Tokyo", "Europe/Berlin", "America/New_York")
    for zone in zones:
        campaign = CampaignFactory.create(
            brand__name=f"Near {zone}", brand__timezone=zone, brand__daily_budget=Decimal("10")
        )
        call_command("simulate_spend", str(campaign.pk), "9.00")
    User.objects.create_superuser("ops", password=PASSWORD)
    log_in(page, live_server.url, "ops")

    before = timezone.now()
    page.goto(f"{live_server.url}/admin/")
    after = timezone.now()

    shoot(page, "dashboard-three-zones")
    shown = set()
    for zone in zones:
        cell = page.locator(f"tr:has-text('Near {zone}') td.local-time")
        text = cell.inner_text()
        expected = {f"{t.astimezone(ZoneInfo(zone)):%a %H:%M} {zone}" for t in (before, after)}
        assert text in expected, (zone, text, expected)
        shown.add(text.split(" ")[1])
    assert len(shown) == 3  # three zones, three different wall clocks


def test_one_vocabulary_for_pauses_and_status_changes_filtered_by_brand(
    page: Page, live_server: LiveServer
) -> None:
    for name in ("Acme", "Globex"):
        campaign = CampaignFactory.create(brand__name=name, brand__daily_budget=Decimal("5"))
        tasks.enforce_budget_limits()  # running, until the spend below exhausts the budget
        call_command("simulate_spend", str(campaign.pk), "5.00")
    User.objects.create_superuser("ops", password=PASSWORD)
    log_in(page, live_server.url, "ops")

    page.goto(f"{live_server.url}/admin/ads/campaignstatuschange/")
    expect(page.locator("#result_list")).to_contain_text("Paused: Brand daily budget exhausted")
    expect(page.locator("#result_list")).not_to_contain_text("brand_daily_budget")
    page.locator("#changelist-filter").get_by_role("link", name="Acme").click()
    expect(page.locator("#result_list")).to_contain_text("Acme")
    expect(page.locator("#result_list")).not_to_contain_text("Globex")
    shoot(page, "status-changes-by-brand")

    page.goto(f"{live_server.url}/admin/ads/campaign/")
    expect(page.locator("#result_list")).to_contain_text("Brand daily budget exhausted")
    page.goto(f"{live_server.url}/admin/")
    pauses = page.locator("section:has(#recent-pauses)")
    expect(pauses).to_contain_text("Brand daily budget exhausted")
    expect(pauses).not_to_contain_text("brand_daily_budget")


def test_zones_are_searched_and_times_are_24_hour_in_an_english_browser(
    page: Page, live_server: LiveServer
) -> None:
    User.objects.create_superuser("ops", password=PASSWORD)
    log_in(page, live_server.url, "ops")

    page.goto(f"{live_server.url}/admin/ads/brand/add/")
    page.fill("#id_timezone", "Berlin")
    options = page.locator("datalist#iana-zones option[value='Europe/Berlin']")
    expect(options).to_have_count(1)
    assert page.get_attribute("#id_timezone", "list") == "iana-zones"

    page.goto(f"{live_server.url}/admin/ads/schedule/add/")
    page.fill("#id_name", "Evenings")
    page.select_option("#id_windows-0-start", "18:30")
    page.select_option("#id_windows-0-end", "23:45")
    shoot(page, "schedule-24-hour")
    assert page.locator("#id_windows-0-start option:checked").inner_text() == "18:30"
    assert "PM" not in page.locator("#windows-group").inner_text()
    page.click("input[name=_save]")
    expect(page.locator("#result_list")).to_contain_text("18:30–23:45")


def test_the_dashboard_charts_each_currency_on_its_own(page: Page, live_server: LiveServer) -> None:
    brands = {  # currency: (brand, budget, spends today)
        "EUR": ("Paris Perfume", "100", ("50.00", "30.00")),
        "USD": ("Boston Books", "50", ("45.50",)),
        "JPY": ("Tokyo Tea", "10000", ("6000", "3000")),
    }
    for currency, (name, budget, spends) in brands.items():
        campaign = CampaignFactory.create(
            brand__name=name,
            brand__currency=currency,
            brand__daily_budget=Decimal(budget),
            brand__monthly_budget=Decimal(budget) * 30,
        )
        for amount in spends:
            call_command("simulate_spend", str(campaign.pk), amount)
    User.objects.create_superuser("ops", password=PASSWORD)
    log_in(page, live_server.url, "ops")

    page.goto(f"{live_server.url}/admin/")

    shoot(page, "dashboard-three-currencies")
    section = page.locator("section:has(#per-hour)")
    expect(section.locator("figure")).to_have_count(3)
    headings = {
        "EUR": "EUR – Euro: €80.00 today",
        "JPY": "JPY – Japanese Yen: ¥9,000 today",
        "USD": "USD – US Dollar: $45.50 today",
    }
    symbols = {"EUR": "€", "JPY": "¥", "USD": "$"}
    for currency, heading in headings.items():
        chart = section.locator(f"figure[data-currency='{currency}']")
        expect(chart.locator("h3")).to_have_text(heading)
        text = chart.text_content() or ""  # the bars' titles too
        assert symbols[currency] in text
        assert [s for c, s in symbols.items() if c != currency and s in text] == [], currency
    expect(page.locator("#dashboard")).not_to_contain_text("all brands")
    near = page.locator("section:has(#near-budget)")
    expect(near).to_contain_text("¥9,000 / ¥10,000 (90 %)")
    expect(near).to_contain_text("$45.50 / $50.00 (91 %)")
    expect(near).to_contain_text("€80.00 / €100.00 (80 %)")
    expect(page.locator("section:has(#alerts)")).to_contain_text(
        "Tokyo Tea reached 80 % of its daily budget (¥9,000 of ¥10,000)"
    )


def test_a_brand_with_spend_shows_its_currency_fixed(page: Page, live_server: LiveServer) -> None:
    campaign = CampaignFactory.create(
        brand__name="Tokyo Tea", brand__currency="JPY", brand__daily_budget=Decimal(10000)
    )
    call_command("simulate_spend", str(campaign.pk), "1200")
    User.objects.create_superuser("ops", password=PASSWORD)
    log_in(page, live_server.url, "ops")

    page.goto(f"{live_server.url}/admin/ads/brand/{campaign.brand_id}/change/")

    expect(page.locator("#id_currency")).to_be_disabled()
    expect(page.locator("#id_currency option:checked")).to_have_text("JPY – Japanese Yen")
    expect(page.locator(".field-currency")).to_contain_text(
        "The currency stays JPY: this brand has spend in JPY"
    )
    expect(page.locator("#id_daily_budget")).to_have_attribute("step", "1")
    expect(page.locator(".field-daily_counter")).to_contain_text("¥1,200")
    shoot(page, "brand-currency-fixed")
    page.fill("#id_daily_budget", "12000")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    expect(page.locator("#result_list")).to_contain_text("¥1,200 / ¥12,000 (10 %)")
    shoot(page, "brand-list-currencies")
