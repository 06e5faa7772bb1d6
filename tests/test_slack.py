"""Slack endpoints (issue 15, item 4): pauses, resumes and budget alerts posted to an
incoming-webhook URL as lines people read, through the same delivery and retries as
webhooks, to a real HTTP receiver on loopback."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from pytest_django import Settings

from ads import tasks
from ads.models import Brand, Campaign, EndpointKind, EventType, WebhookEndpoint
from ads.services import record_spend, save_brand
from tests.conftest import NOW
from tests.factories import CampaignFactory, WebhookEndpointFactory
from tests.receiver import Receiver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock", "loopback_webhooks")]


def slack(receiver: Receiver, *types: EventType) -> WebhookEndpoint:
    return WebhookEndpointFactory.create(
        kind=EndpointKind.SLACK,
        url=receiver.url("/services/T000/B000/XXXX"),
        all_types=False,
        event_types=list(types),
    )


def texts(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["text"] for r in receiver.to("/services/T000/B000/XXXX")]


def test_a_pause_reads_which_campaign_why_the_figures_and_where_to_look(
    receiver: Receiver, campaign: Campaign
) -> None:
    endpoint = slack(receiver, EventType.CAMPAIGN_PAUSED)

    record_spend(campaign.pk, "10.00", at=NOW)
    tasks.deliver_webhooks(endpoint.pk)

    [request] = receiver.to("/services/T000/B000/XXXX")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "text": (
            ":double_vertical_bar: *Search* (Acme) Paused: Brand daily budget exhausted\n"
            "Search today €10.00 · Acme today €10.00 of €10.00, this month €10.00 of €3,000.00\n"
            f"<http://127.0.0.1:8000/admin/ads/campaign/{campaign.pk}/change/|Open the campaign>"
            " · by spend"
        )
    }


def test_a_resume_says_what_kept_it_paused(
    receiver: Receiver, campaign: Campaign, settings: Settings
) -> None:
    settings.SITE_URL = "https://budgets.example.com"
    record_spend(campaign.pk, "10.00", at=NOW)
    endpoint = slack(receiver, EventType.CAMPAIGN_RESUMED)
    brand = Brand.objects.get()
    brand.daily_budget = Decimal("25.00")
    save_brand(brand, changed_fields=["daily_budget"], actor="alice", at=NOW)

    tasks.deliver_webhooks(endpoint.pk)

    assert texts(receiver) == [
        ":arrow_forward: *Search* (Acme) Resumed (was: Brand daily budget exhausted)\n"
        "Search today €10.00 · Acme today €10.00 of €25.00, this month €10.00 of €3,000.00\n"
        f"<https://budgets.example.com/admin/ads/campaign/{campaign.pk}/change/"
        "|Open the campaign> · by alice"
    ]


def test_a_budget_alert_reads_the_share_the_amounts_and_links_the_brand(
    receiver: Receiver, campaign: Campaign
) -> None:
    endpoint = slack(receiver, EventType.BUDGET_THRESHOLD_REACHED)

    record_spend(campaign.pk, "8.00", at=NOW)
    tasks.deliver_webhooks(endpoint.pk)

    brand = campaign.brand_id
    link = f"<http://127.0.0.1:8000/admin/ads/brand/{brand}/change/|Open the brand>"
    assert texts(receiver) == [
        f":warning: *Acme* reached 50% of its daily budget for 2026-11-27: €8.00 of €10.00 spent"
        f"\n{link}",
        f":warning: *Acme* reached 80% of its daily budget for 2026-11-27: €8.00 of €10.00 spent"
        f"\n{link}",
    ]


def test_an_exhausted_budget_alert_says_the_campaigns_are_paused(
    receiver: Receiver, campaign: Campaign
) -> None:
    endpoint = slack(receiver, EventType.BUDGET_THRESHOLD_REACHED)

    record_spend(campaign.pk, "10.00", at=NOW)
    tasks.deliver_webhooks(endpoint.pk)

    assert texts(receiver)[-1].startswith(
        ":warning: *Acme* reached 100% of its daily budget for 2026-11-27: €10.00 of €10.00 "
        "spent; its campaigns are paused until the budget resets or is raised\n"
    )


def test_figures_are_in_the_brands_own_currency(receiver: Receiver) -> None:
    campaign = CampaignFactory.create(
        name="Tokyo search",
        brand__name="Kaisha",
        brand__currency="JPY",
        brand__daily_budget=Decimal(5000),
        brand__monthly_budget=Decimal(100000),
        daily_budget=Decimal(2000),
        evaluated_at=NOW,
    )
    endpoint = slack(receiver, EventType.CAMPAIGN_PAUSED)

    record_spend(campaign.pk, "2000", at=NOW)
    tasks.deliver_webhooks(endpoint.pk)

    [text] = texts(receiver)
    assert "Paused: Campaign daily budget exhausted" in text
    assert "Tokyo search today ¥2,000 of its ¥2,000 · Kaisha today ¥2,000 of ¥5,000" in text


def test_names_cannot_inject_slack_markup(receiver: Receiver) -> None:
    campaign = CampaignFactory.create(
        name="<!channel> & <https://evil.example|click>",
        brand__name="A&B",
        brand__daily_budget=Decimal(10),
        evaluated_at=NOW,
    )
    endpoint = slack(receiver, EventType.CAMPAIGN_PAUSED)

    record_spend(campaign.pk, "10", at=NOW)
    tasks.deliver_webhooks(endpoint.pk)

    [text] = texts(receiver)
    assert text.startswith(
        ":double_vertical_bar: *&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;* "
        "(A&amp;B) Paused"
    )


def test_slack_messages_are_retried_like_webhooks(
    receiver: Receiver, campaign: Campaign, time_machine: time_machine.TimeMachineFixture
) -> None:
    endpoint = slack(receiver, EventType.CAMPAIGN_PAUSED)
    receiver.answer("/services/T000/B000/XXXX", 500)

    record_spend(campaign.pk, "10.00", at=NOW)
    tasks.deliver_webhooks(endpoint.pk)
    time_machine.move_to(NOW + timedelta(seconds=30), tick=False)
    tasks.deliver_webhooks(endpoint.pk)

    first, second = texts(receiver)
    assert first == second
    assert first.startswith(":double_vertical_bar: *Search* (Acme) Paused")


def test_a_slack_url_is_never_written_whole_to_the_log(
    receiver: Receiver, campaign: Campaign, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = slack(receiver, EventType.CAMPAIGN_PAUSED)
    receiver.answer("/services/T000/B000/XXXX", 404)

    record_spend(campaign.pk, "10.00", at=NOW)
    tasks.deliver_webhooks(endpoint.pk)

    assert f"({receiver.url('')}) failed (try 1): HTTP 404: answer 404" in caplog.text
    assert "XXXX" not in caplog.text
