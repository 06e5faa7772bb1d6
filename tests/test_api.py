"""The HTTP API (issue 7): every endpoint, auth, batches, idempotency, conflicts."""

from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.test import Client

from ads.api.schemas import SpendIn
from ads.models import ApiKey, Brand, Campaign, SpendEvent
from tests.conftest import NOW, make_api_key
from tests.factories import CampaignFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


def post(client: Client, key: str | None, body: object) -> tuple[int, Any]:
    headers = {"X-API-Key": key} if key else {}
    response = client.post("/api/v1/spend", body, content_type="application/json", headers=headers)
    return response.status_code, response.json()


def get(client: Client, key: str | None, url: str) -> tuple[int, Any]:
    response = client.get(url, headers={"X-API-Key": key} if key else {})
    return response.status_code, response.json()


def test_one_spend_is_recorded_and_reports_state_changes(
    client: Client, api_key: str, campaign: Campaign
) -> None:
    status, body = post(
        client, api_key, {"campaign_id": campaign.pk, "amount": "10.00", "idempotency_key": "o-1"}
    )

    assert status == 200
    assert body == {
        "results": [{"index": 0, "idempotency_key": "o-1", "status": "recorded"}],
        "state_changes": [
            {
                "campaign_id": campaign.pk,
                "name": "Search",
                "is_active": False,
                "pause_reasons": ["brand_daily_budget"],
                "change": "paused (+brand_daily_budget)",
            }
        ],
    }
    assert SpendEvent.objects.get().source == "api"


def test_duplicate_keys_are_idempotent(client: Client, api_key: str, campaign: Campaign) -> None:
    spend = {"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "o-1"}

    post(client, api_key, spend)
    status, body = post(client, api_key, {"events": [spend, spend]})

    assert status == 200
    assert [r["status"] for r in body["results"]] == ["already_recorded", "already_recorded"]
    assert Brand.objects.get().current_daily_spend == Decimal("1.50")


def test_a_producer_looks_a_spend_up_by_its_key(
    client: Client, api_key: str, campaign: Campaign
) -> None:
    post(
        client, api_key, {"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "o/1 x"}
    )
    other_brand = make_api_key(CampaignFactory.create().brand)

    found = get(client, api_key, "/api/v1/spend?idempotency_key=o/1%20x")
    missing = get(client, api_key, "/api/v1/spend?idempotency_key=o-2")
    hidden = get(client, other_brand, "/api/v1/spend?idempotency_key=o/1%20x")
    misspelt = get(client, api_key, "/api/v1/spend?key=o-2")

    assert found == (
        200,
        {
            "idempotency_key": "o/1 x",
            "campaign_id": campaign.pk,
            "brand_id": campaign.brand_id,
            "amount": "1.50",
            "currency": "EUR",
            "occurred_at": "2026-11-27T12:00:00Z",
            "recorded_at": "2026-11-27T12:00:00Z",
            "source": "api",
        },
    )
    assert missing[0] == hidden[0] == 404
    assert missing[1]["detail"] == [
        "idempotency_key: no spend is recorded with this key; send the spend again with the "
        "same key (safe: a key is recorded once)"
    ]
    assert misspelt[0] == 422


def test_a_key_whose_brands_were_deleted_sees_nothing(client: Client, campaign: Campaign) -> None:
    doomed = CampaignFactory.create(name="Gone").brand
    key = make_api_key(doomed)
    doomed.delete()  # no spend yet, so it may go

    assert get(client, key, "/api/v1/brands") == (200, [])
    assert get(client, key, f"/api/v1/campaigns/{campaign.pk}")[0] == 404
    status, _ = post(
        client, key, {"campaign_id": campaign.pk, "amount": "1.00", "idempotency_key": "x-1"}
    )
    assert status == 404
    assert not SpendEvent.objects.exists()


def test_a_conflict_with_another_brands_spend_does_not_show_it(
    client: Client, api_key: str, campaign: Campaign
) -> None:
    post(
        client, api_key, {"campaign_id": campaign.pk, "amount": "123.45", "idempotency_key": "k-1"}
    )
    other = CampaignFactory.create()
    other_key = make_api_key(other.brand)

    status, body = post(
        client, other_key, {"campaign_id": other.pk, "amount": "1.00", "idempotency_key": "k-1"}
    )

    assert status == 409
    assert body["detail"] == [
        "index 0: idempotency_key: already used for a different spend; use a new key for a "
        "new spend"
    ]
    assert "123.45" not in str(body)


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (
            {"campaign_id": 1, "amount": "1", "idempotency_key": "k", "occured_at": "x"},
            "occured_at: unknown field",
        ),
        (
            {"events": [{"campaign_id": 1, "amount": "1", "idempotency_key": "k", "cost": "2"}]},
            "index 0: cost: unknown field",
        ),
        (
            {"events": [], "campaign_id": 1},
            "campaign_id: unknown field",
        ),
    ],
)
def test_an_unknown_field_is_refused_not_dropped(
    client: Client, api_key: str, campaign: Campaign, body: dict[str, object], line: str
) -> None:
    status, answer = post(client, api_key, body)

    assert status == 422
    assert any(detail.startswith(line) for detail in answer["detail"]), answer
    assert not SpendEvent.objects.exists()


def test_same_key_with_another_amount_is_a_409_and_changes_nothing(
    client: Client, api_key: str, campaign: Campaign
) -> None:
    post(client, api_key, {"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "o-1"})

    status, body = post(
        client, api_key, {"campaign_id": campaign.pk, "amount": "2.00", "idempotency_key": "o-1"}
    )

    assert status == 409
    assert "already used for a different spend" in body["detail"][0]
    assert Brand.objects.get().current_daily_spend == Decimal("1.50")


def test_batch_with_one_bad_row_writes_nothing_and_names_its_index(
    client: Client, api_key: str, campaign: Campaign
) -> None:
    events = [
        {"campaign_id": campaign.pk, "amount": "1.00", "idempotency_key": f"b-{n}"}
        for n in range(5)
    ]
    events[3]["amount"] = "NaN"

    status, body = post(client, api_key, {"events": events})

    assert status == 422
    assert body == {"detail": ["index 3: amount: 'NaN' is not a finite amount"]}
    assert not SpendEvent.objects.exists()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"campaign_id": 1, "amount": 1.5, "idempotency_key": "k"}, "amount"),  # a float
        ({"campaign_id": "x", "amount": "1", "idempotency_key": "k"}, "campaign_id"),
        ({"campaign_id": 1, "amount": "1"}, "idempotency_key"),
        ({"events": []}, "events"),
    ],
)
def test_malformed_bodies_are_422_naming_the_field(
    client: Client, api_key: str, campaign: Campaign, body: dict[str, object], where: str
) -> None:
    response = client.post(
        "/api/v1/spend", body, content_type="application/json", headers={"X-API-Key": api_key}
    )

    assert response.status_code == 422
    assert where in response.content.decode()
    assert not SpendEvent.objects.exists()


@pytest.mark.parametrize("presented", [None, "abg_nope_nope", "garbage"])
def test_spend_needs_a_valid_key(client: Client, campaign: Campaign, presented: str | None) -> None:
    status, _ = post(
        client, presented, {"campaign_id": campaign.pk, "amount": "1", "idempotency_key": "k"}
    )

    assert status == 401
    assert not SpendEvent.objects.exists()


def test_a_revoked_key_is_refused(client: Client, campaign: Campaign) -> None:
    revoked = make_api_key(revoked_at=NOW)

    assert get(client, revoked, "/api/v1/brands")[0] == 401


def test_a_key_for_brand_a_sees_brand_b_as_missing(client: Client, campaign: Campaign) -> None:
    other = CampaignFactory.create(brand__name="Other")
    key_for_acme = make_api_key(campaign.brand)

    assert get(client, key_for_acme, f"/api/v1/campaigns/{other.pk}")[0] == 404
    assert get(client, key_for_acme, f"/api/v1/brands/{other.brand_id}")[0] == 404
    status, body = post(
        client, key_for_acme, {"campaign_id": other.pk, "amount": "1", "idempotency_key": "k"}
    )
    assert status == 404
    assert body == {"detail": [f"index 0: campaign_id: no campaign with id {other.pk}"]}
    assert [b["name"] for b in get(client, key_for_acme, "/api/v1/brands")[1]] == ["Acme"]
    assert not SpendEvent.objects.exists()


def test_brand_status(client: Client, api_key: str, campaign: Campaign) -> None:
    post(client, api_key, {"campaign_id": campaign.pk, "amount": "8.00", "idempotency_key": "k"})

    status, body = get(client, api_key, f"/api/v1/brands/{campaign.brand_id}")

    assert status == 200
    assert body == {
        "id": campaign.brand_id,
        "name": "Acme",
        "timezone": "UTC",
        "currency": "EUR",
        "is_active": True,
        "local_time": "2026-11-27T12:00:00Z",
        "daily_budget": "10.00",
        "monthly_budget": "3000.00",
        "spend_today": "8.00",
        "spend_this_month": "8.00",
        "left_today": "2.00",
        "left_this_month": "2992.00",
        "over_today": "0.00",
        "over_this_month": "0.00",
        "pacing_today": "ahead",
        "pacing_this_month": "behind",
    }


def test_brand_status_says_how_much_spend_is_over_budget(
    client: Client, api_key: str, campaign: Campaign
) -> None:
    post(client, api_key, {"campaign_id": campaign.pk, "amount": "15.00", "idempotency_key": "k"})

    body = get(client, api_key, f"/api/v1/brands/{campaign.brand_id}")[1]

    assert (body["spend_today"], body["left_today"], body["over_today"]) == (
        "15.00", "0.00", "5.00"
    )  # fmt: skip
    assert (body["left_this_month"], body["over_this_month"]) == ("2985.00", "0.00")


def test_status_after_local_midnight_shows_the_new_day_before_any_reset(
    client: Client, api_key: str, campaign: Campaign, time_machine: time_machine.TimeMachineFixture
) -> None:
    Campaign.objects.update(daily_budget=Decimal("9.00"))
    post(client, api_key, {"campaign_id": campaign.pk, "amount": "12.00", "idempotency_key": "k"})
    time_machine.move_to("2026-11-28T00:30:00+00:00", tick=False)

    brand = get(client, api_key, f"/api/v1/brands/{campaign.brand_id}")[1]
    shown = get(client, api_key, f"/api/v1/campaigns/{campaign.pk}")[1]

    assert (brand["spend_today"], brand["left_today"], brand["over_today"]) == (
        "0.00", "10.00", "0.00"
    )  # fmt: skip
    assert brand["spend_this_month"] == "12.00"
    assert shown["daily_spend"] == "0.00"


def test_campaign_status_and_filters(client: Client, api_key: str, campaign: Campaign) -> None:
    paused = CampaignFactory.create(
        brand=campaign.brand, name="Off", is_enabled=False, evaluated_at=NOW
    )

    status, body = get(client, api_key, f"/api/v1/campaigns/{paused.pk}")
    active = get(client, api_key, f"/api/v1/campaigns?brand={campaign.brand_id}&active=true")[1]

    assert status == 200
    assert body["pause_reasons"] == ["disabled"]
    assert body["is_active"] is False
    assert body["daily_spend"] == "0.00"
    assert body["currency"] == "EUR"
    assert [c["name"] for c in active] == ["Search"]


# --- Currency: a spend may state it; every amount in an answer is paired with it --------

OTHER_CURRENCY = (
    "currency: the spend is in USD but brand 'Acme' pays in EUR; nothing is converted, so "
    "send the amount in EUR"
)


@pytest.mark.parametrize("code", ["EUR", "eur"])
def test_a_spend_stating_the_brands_currency_is_recorded(
    client: Client, api_key: str, campaign: Campaign, code: str
) -> None:
    spend = {"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "o-1"}

    status, body = post(client, api_key, {**spend, "currency": code})

    assert (status, body["results"][0]["status"]) == (200, "recorded")
    assert Brand.objects.get().current_daily_spend == Decimal("1.50")


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_a_spend_in_another_currency_is_refused_naming_both_and_nothing_is_written(
    client: Client, api_key: str, campaign: Campaign, batch: bool
) -> None:
    good = {"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "o-1"}
    other = {"campaign_id": campaign.pk, "amount": "1.50", "idempotency_key": "o-2"}
    body = (
        {"events": [good, {**other, "currency": "USD"}]} if batch else {**other, "currency": "usd"}
    )

    status, answer = post(client, api_key, body)

    assert status == 422
    assert answer == {"detail": [f"index {1 if batch else 0}: {OTHER_CURRENCY}"]}
    assert not SpendEvent.objects.exists()
    brand = Brand.objects.get()
    assert (brand.current_daily_spend, brand.current_monthly_spend) == (Decimal(0), Decimal(0))
    assert Campaign.objects.get().daily_spend == 0


def test_every_answer_with_amounts_says_their_currency(client: Client, api_key: str) -> None:
    tokyo = CampaignFactory.create(
        brand__currency="JPY", brand__daily_budget=Decimal(10_000), evaluated_at=NOW
    )
    post(client, api_key, {"campaign_id": tokyo.pk, "amount": "1200", "idempotency_key": "y-1"})

    brand = get(client, api_key, f"/api/v1/brands/{tokyo.brand_id}")[1]
    brands = get(client, api_key, "/api/v1/brands")[1]
    shown = get(client, api_key, f"/api/v1/campaigns/{tokyo.pk}")[1]
    campaigns = get(client, api_key, "/api/v1/campaigns")[1]
    spend = get(client, api_key, "/api/v1/spend?idempotency_key=y-1")[1]

    assert (brand["currency"], Decimal(brand["spend_today"])) == ("JPY", Decimal(1200))
    assert [b["currency"] for b in brands] == ["JPY"]
    assert (shown["currency"], Decimal(shown["daily_spend"])) == ("JPY", Decimal(1200))
    assert [c["currency"] for c in campaigns] == ["JPY"]
    assert (spend["currency"], Decimal(spend["amount"])) == ("JPY", Decimal(1200))


def test_the_document_pairs_every_money_field_with_a_currency(client: Client) -> None:
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    money_pattern = r"^-?[0-9]+(\.[0-9]+)?$"

    def is_money(field: dict[str, Any]) -> bool:
        kinds = field.get("anyOf", [field])
        return any(kind.get("pattern") == money_pattern for kind in kinds)

    with_money = {
        name for name, schema in schemas.items()
        if any(is_money(field) for field in schema.get("properties", {}).values())
    }  # fmt: skip

    assert with_money == {"BrandOut", "CampaignOut", "SpendEventOut"}
    for name in with_money:
        assert "currency" in schemas[name]["required"], name
        assert schemas[name]["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"
    stated = schemas["SpendIn"]["properties"]["currency"]
    assert "currency" not in schemas["SpendIn"]["required"]
    assert stated["anyOf"][0] == {
        "type": "string", "pattern": "^[A-Za-z]{3}$", "minLength": 3, "maxLength": 3
    }  # fmt: skip
    assert "must be the brand's currency" in stated["description"]


def test_an_unknown_field_answer_names_every_field_a_spend_has(
    client: Client, api_key: str, campaign: Campaign
) -> None:
    spend = {"campaign_id": campaign.pk, "amount": "1", "idempotency_key": "k", "curency": "EUR"}

    status, answer = post(client, api_key, spend)

    assert status == 422
    [line] = answer["detail"]
    assert line.startswith("curency: unknown field; a spend has ")
    assert all(name in line for name in SpendIn.model_fields), line


def test_health_needs_no_key_and_reports_each_part(client: Client) -> None:
    response = client.get("/api/v1/health")

    assert response.json()["database"] == "ok"
    assert response.status_code in (200, 503)
    assert set(response.json()) == {"database", "broker"}


def test_openapi_document_and_local_docs(client: Client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    docs = client.get("/api/v1/docs").content.decode()

    assert {"/api/v1/spend", "/api/v1/brands", "/api/v1/health"} <= set(schema["paths"])
    assert "cdn" not in docs.lower()
    assert "/static/ninja/" in docs


def test_a_key_made_in_the_admin_is_shown_once_stored_hashed_and_revocable(
    admin_client: Client, campaign: Campaign
) -> None:
    response = admin_client.post(
        "/admin/ads/apikey/add/", {"name": "Google Ads feed", "brands": [campaign.brand_id]}
    )
    key = response.context["key"]
    api_key = ApiKey.objects.get()

    assert response.status_code == 200
    assert f'value="{key}"' in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # Never in a cookie (the messages' default storage), nor in the session.
    assert all(key not in morsel.value for morsel in response.cookies.values())
    assert all(key not in str(v) for v in admin_client.session.values())
    assert key.startswith(f"abg_{api_key.prefix}_")
    assert key.split("_", 2)[2] not in api_key.secret_hash
    assert get(Client(), key, "/api/v1/brands")[0] == 200
    assert key not in admin_client.get(f"/admin/ads/apikey/{api_key.pk}/change/").content.decode()

    revoked = admin_client.post(
        "/admin/ads/apikey/", {"action": "revoke", "_selected_action": [api_key.pk]}
    )

    assert revoked.status_code == 302

    assert get(Client(), key, "/api/v1/brands")[0] == 401


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"name": "feed"}, "choose the brands this key may use, or tick"),
        ({"name": "feed", "all_brands": "on", "brands": "BRAND"}, "not both"),
    ],
)
def test_the_admin_asks_for_some_brands_or_all_brands(
    admin_client: Client, campaign: Campaign, form: dict[str, str], error: str
) -> None:
    form = {k: str(campaign.brand_id) if v == "BRAND" else v for k, v in form.items()}

    response = admin_client.post("/admin/ads/apikey/add/", form)

    assert response.status_code == 200
    assert error in response.content.decode().replace("&#x27;", "'")
    assert not ApiKey.objects.exists()
