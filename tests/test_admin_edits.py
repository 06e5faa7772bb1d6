"""Admin saves keep a person's intent (issue 12, items 1 and 2): every editable field is
saved, a stale page writes only what this person changed on it, and a change made over
a colleague's since the page opened is refused with both values, writing nothing.

The forms are read from the pages the admin serves and posted back as a browser would.
"""

from datetime import time
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model
from django.forms import (
    BooleanField,
    CharField,
    ChoiceField,
    DecimalField,
    EmailField,
    Field,
    ModelChoiceField,
    ModelMultipleChoiceField,
    MultipleChoiceField,
    TimeField,
)
from django.forms.models import InlineForeignKeyField
from django.test import Client, RequestFactory
from django.urls import reverse

from ads.admin import ReadOnlyAdmin
from ads.models import (
    ApiKey,
    Brand,
    Campaign,
    CampaignStatusChange,
    ScheduleWindow,
    SettingChange,
)
from ads.services import save_brand, set_campaigns_enabled
from tests.conftest import NOW, admin_url
from tests.factories import (
    BrandFactory,
    CampaignFactory,
    ScheduleFactory,
    WebhookEndpointFactory,
)
from tests.html_forms import FormData, read_form

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


def open_page(client: Client, obj: Model) -> FormData:
    """What the change page's form would send back untouched."""
    response = client.get(admin_url(obj))
    assert response.status_code == 200
    return read_form(response.content.decode(), f"{obj._meta.model_name}_form")


def other_value(field: Field, name: str, current: list[str]) -> list[str]:
    """A valid value for `field` different from what the page shows."""
    value = current[0] if current else ""
    if isinstance(field, BooleanField):
        return [] if current else ["on"]
    if isinstance(field, ModelMultipleChoiceField):
        assert field.queryset is not None
        others = [str(pk) for pk in field.queryset.values_list("pk", flat=True)]
        return [pk for pk in others if pk not in current][:1]
    if isinstance(field, ModelChoiceField):
        assert field.queryset is not None
        pks = [str(pk) for pk in field.queryset.values_list("pk", flat=True)]
        return [next(pk for pk in pks if pk != value)]
    if name == "url":  # an endpoint's: https and a public address, as the rules want
        return [
            "https://93.184.216.34/in"
            if value != "https://93.184.216.34/in"
            else "https://93.184.216.35/in"
        ]
    if isinstance(field, MultipleChoiceField):
        choices = [str(choice) for choice in dict(field.choices)]  # type: ignore[arg-type]  # (value, label) pairs
        return [c for c in choices if c not in current] or choices[:1]
    if isinstance(field, TimeField):
        return ["06:45" if value != "06:45" else "07:00"]
    if isinstance(field, DecimalField):
        return [str(Decimal(value or "0") + Decimal("1.25"))]
    if isinstance(field, EmailField):
        return ["new-contact@example.com"]
    if name == "timezone":
        return ["Asia/Tokyo" if value != "Asia/Tokyo" else "Europe/Berlin"]
    if name == "currency":  # the brand has no spend yet, so it may still change
        return ["USD" if value != "USD" else "EUR"]  # 2 places, as the budgets after it
    if isinstance(field, CharField):
        return [f"{value} changed"]
    if isinstance(field, ChoiceField):
        choices = [str(choice) for choice in dict(field.choices) if choice]  # type: ignore[arg-type]  # (value, label) pairs
        return [next(c for c in choices if c != value)]
    raise AssertionError(f"no other value known for {name}: {type(field).__name__}")


def editable_forms(client: Client, obj: Model) -> list[tuple[str, Any, Model]]:
    """(prefix, form, instance) of the page's main form and every inline row."""
    response = client.get(admin_url(obj))
    context = response.context
    found = [("", context["adminform"].form, obj)]
    for inline in context["inline_admin_formsets"]:
        for form in inline.formset.initial_forms:
            found.append((f"{form.prefix}-", form, form.instance))
    return found


def saved_value(obj: Model, prefix: str, name: str, field: Field, admin_user: User) -> Any:
    """The field's value now in the database, as its form reads it."""
    fresh = type(obj)._default_manager.get(pk=obj.pk)
    request = RequestFactory().get("/")
    request.user = admin_user
    model_admin = admin.site._registry.get(type(obj))
    if model_admin is not None and not prefix:
        form_class = model_admin.get_form(request, fresh)
    else:
        parent_admin = next(
            a for a in admin.site._registry.values() if any(i.model is type(obj) for i in a.inlines)
        )
        inline = next(i for i in parent_admin.get_inline_instances(request) if i.model is type(obj))
        form_class = inline.get_formset(request, None).form
    return form_class(instance=fresh).initial[name]


@pytest.fixture
def world() -> dict[str, Any]:
    """One object of each admin with a change form, and spare choices for every picker."""
    schedule = ScheduleFactory.create()
    ScheduleWindow.objects.create(schedule=schedule, weekdays=0b11111, start=time(9), end=time(17))
    ScheduleFactory.create(name="Spare schedule")
    brand = BrandFactory.create(contact_email="old@example.com")
    BrandFactory.create(name="Spare brand")
    campaign = CampaignFactory.create(brand=brand, daily_budget=Decimal("20.00"), evaluated_at=NOW)
    key = ApiKey.objects.create(name="Feed", prefix="abc123", secret_hash="0" * 64)
    key.brands.set([brand])
    endpoint = WebhookEndpointFactory.create(
        name="DSP",
        url="https://93.184.216.34/in",
        all_types=False,
        event_types=["campaign.paused"],
        brands=[brand],
    )
    return {
        "brand": brand,
        "campaign": campaign,
        "schedule": schedule,
        "apikey": key,
        "webhookendpoint": endpoint,
    }


MODEL_ADMINS = ["brand", "campaign", "schedule", "apikey", "webhookendpoint"]


def test_every_model_admin_with_a_change_form_is_covered() -> None:
    editable = {
        model._meta.model_name
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label == "ads" and not isinstance(model_admin, ReadOnlyAdmin)
    }
    assert editable == set(MODEL_ADMINS)


@pytest.mark.parametrize("which", MODEL_ADMINS)
def test_each_editable_field_of_each_admin_form_is_saved(
    admin_client: Client, admin_user: User, world: dict[str, Any], which: str
) -> None:
    obj = world[which]
    tried = []
    for prefix, form, instance in editable_forms(admin_client, obj):
        for name, field in form.fields.items():
            if name in ("id", "DELETE") or isinstance(field, InlineForeignKeyField):
                continue  # a row's identity and its link to the page's object
            data = open_page(admin_client, obj)
            key = f"{prefix}{name}"
            new = other_value(field, name, data.get(key, []))
            data[key] = new
            if name == "all_brands" and new:  # a key has all brands or some, not both
                data["brands"] = []
            if name == "brands":
                data.pop("all_brands", None)
            if name == "all_types" and new:  # so has an endpoint, and its event types
                data["event_types"] = []
            if name == "event_types":
                data.pop("all_types", None)

            response = admin_client.post(admin_url(obj), data)

            assert response.status_code == 302, (key, response.context["errors"])
            stored = saved_value(instance, prefix, name, field, admin_user)
            many = isinstance(field, MultipleChoiceField | ModelMultipleChoiceField)
            raw = new if many else (new[0] if new else None)
            assert not field.has_changed(stored, raw), (key, stored, new)
            tried.append(key)
    assert tried, "no editable field found"


def test_a_changed_contact_email_is_saved_and_audited(
    admin_client: Client, admin_user: User, world: dict[str, Any]
) -> None:
    brand = world["brand"]
    data = open_page(admin_client, brand)
    data["contact_email"] = ["new-contact@example.com"]

    response = admin_client.post(admin_url(brand), data)

    assert response.status_code == 302
    assert Brand.objects.get(pk=brand.pk).contact_email == "new-contact@example.com"
    audit = SettingChange.objects.get(field="contact_email")
    assert (audit.actor, audit.old_value, audit.new_value) == (
        admin_user.username,
        "old@example.com",
        "new-contact@example.com",
    )


# --- Item 2: a stale page --------------------------------------------------------------


def test_a_stale_brand_page_does_not_switch_the_brand_on_again(
    admin_client: Client, admin_user: User, world: dict[str, Any]
) -> None:
    brand = world["brand"]
    page = open_page(admin_client, brand)  # A opens the page: the brand is on
    switched_off = Brand.objects.get(pk=brand.pk)
    switched_off.is_active = False
    save_brand(switched_off, changed_fields=["is_active"], actor="bob", at=NOW)  # B, meanwhile
    page["daily_budget"] = ["150.00"]  # A changes only the budget

    response = admin_client.post(admin_url(brand), page)

    assert response.status_code == 302
    saved = Brand.objects.get(pk=brand.pk)
    assert (saved.is_active, saved.daily_budget) == (False, Decimal("150.00"))
    assert not Campaign.objects.get(pk=world["campaign"].pk).is_active
    mine = SettingChange.objects.filter(actor=admin_user.username)
    assert list(mine.values_list("field", flat=True)) == ["daily_budget"]
    assert not CampaignStatusChange.objects.filter(actor=admin_user.username).exists()


def test_a_stale_campaign_page_does_not_enable_the_campaign_again(
    admin_client: Client, world: dict[str, Any]
) -> None:
    campaign = world["campaign"]
    page = open_page(admin_client, campaign)
    set_campaigns_enabled([campaign.pk], enabled=False, actor="bob", at=NOW)
    page["name"] = ["Renamed by A"]

    response = admin_client.post(admin_url(campaign), page)

    assert response.status_code == 302
    saved = Campaign.objects.get(pk=campaign.pk)
    assert (saved.name, saved.is_enabled, saved.is_active) == ("Renamed by A", False, False)


def test_a_stale_campaign_row_on_the_brand_page_does_not_enable_it_again(
    admin_client: Client, world: dict[str, Any]
) -> None:
    brand, campaign = world["brand"], world["campaign"]
    page = open_page(admin_client, brand)
    set_campaigns_enabled([campaign.pk], enabled=False, actor="bob", at=NOW)
    page["monthly_budget"] = ["4000.00"]

    response = admin_client.post(admin_url(brand), page)

    assert response.status_code == 302
    assert not Campaign.objects.get(pk=campaign.pk).is_enabled
    assert Brand.objects.get(pk=brand.pk).monthly_budget == Decimal("4000.00")


def test_changing_a_field_a_colleague_changed_meanwhile_is_refused_with_both_values(
    admin_client: Client, world: dict[str, Any]
) -> None:
    brand = world["brand"]
    page = open_page(admin_client, brand)  # shows 100.00
    theirs = Brand.objects.get(pk=brand.pk)
    theirs.daily_budget = Decimal("300.00")
    save_brand(theirs, changed_fields=["daily_budget"], actor="bob", at=NOW)
    page["daily_budget"] = ["250.00"]
    page["contact_email"] = ["mine@example.com"]
    audit_before = SettingChange.objects.count()

    response = admin_client.post(admin_url(brand), page)

    assert response.status_code == 200
    text = response.content.decode()
    assert "bob (Fri 27 Nov 12:00 UTC) changed this to 300.00" in text
    assert "the page showed 100.00" in text
    assert "you entered 250.00" in text
    assert "Nothing was saved" in text
    saved = Brand.objects.get(pk=brand.pk)
    assert (saved.daily_budget, saved.contact_email) == (Decimal("300.00"), "old@example.com")
    assert SettingChange.objects.count() == audit_before

    # The page now shows 300.00 as seen: saving again means "replace it with mine".
    again = read_form(text, "brand_form")
    assert again["initial-daily_budget"] == ["300.00"]
    assert admin_client.post(admin_url(brand), again).status_code == 302
    assert Brand.objects.get(pk=brand.pk).daily_budget == Decimal("250.00")


def test_the_same_change_made_by_both_is_not_a_conflict(
    admin_client: Client, world: dict[str, Any]
) -> None:
    brand = world["brand"]
    page = open_page(admin_client, brand)
    theirs = Brand.objects.get(pk=brand.pk)
    theirs.daily_budget = Decimal("300.00")
    save_brand(theirs, changed_fields=["daily_budget"], actor="bob", at=NOW)
    page["daily_budget"] = ["300.00"]

    assert admin_client.post(admin_url(brand), page).status_code == 302


def test_a_campaign_row_switched_meanwhile_keeps_that_switch_when_this_person_left_it(
    admin_client: Client, world: dict[str, Any]
) -> None:
    brand, campaign = world["brand"], world["campaign"]
    set_campaigns_enabled([campaign.pk], enabled=False, actor="carol", at=NOW)
    page = open_page(admin_client, brand)  # shows the campaign disabled
    set_campaigns_enabled([campaign.pk], enabled=True, actor="bob", at=NOW)
    page["campaigns-0-daily_budget"] = ["35.00"]  # the row still shows the switch off

    response = admin_client.post(admin_url(brand), page)

    assert response.status_code == 302
    saved = Campaign.objects.get(pk=campaign.pk)
    assert (saved.is_enabled, saved.daily_budget) == (True, Decimal("35.00"))


def test_bulk_switch_leaves_alone_campaigns_switched_by_someone_else_since_the_list_opened(
    admin_client: Client, admin_user: User, world: dict[str, Any]
) -> None:
    campaign = world["campaign"]
    other = CampaignFactory.create(brand=campaign.brand, is_enabled=False)
    listing = admin_client.get(reverse("admin:ads_campaign_changelist"))
    page = read_form(listing.content.decode(), "changelist-form")
    assert page["page_opened_at"] == [NOW.isoformat()]
    with time_machine.travel(NOW.replace(minute=5), tick=False):
        set_campaigns_enabled([campaign.pk], enabled=False, actor="bob", at=NOW.replace(minute=5))
    with time_machine.travel(NOW.replace(minute=10), tick=False):
        response = admin_client.post(
            reverse("admin:ads_campaign_changelist"),
            {**page, "action": "enable", "_selected_action": [campaign.pk, other.pk]},
            follow=True,
        )

    assert [status for _, status in response.redirect_chain] == [302]
    assert response.status_code == 200
    assert not Campaign.objects.get(pk=campaign.pk).is_enabled  # bob's choice stands
    assert Campaign.objects.get(pk=other.pk).is_enabled
    text = response.content.decode()
    assert "1 campaign(s) enabled" in text
    assert f"{campaign.name}: disabled by bob at Fri 27 Nov 12:05 UTC" in text


def test_a_stale_api_key_page_does_not_write_back_its_brands(
    admin_client: Client, world: dict[str, Any]
) -> None:
    key = world["apikey"]
    page = open_page(admin_client, key)
    spare = Brand.objects.get(name="Spare brand")
    key.brands.set([spare])  # a colleague moved the key to another brand meanwhile
    page["name"] = ["Renamed feed"]

    response = admin_client.post(admin_url(key), page)

    assert response.status_code == 302
    assert list(ApiKey.objects.get().brands.all()) == [spare]
    assert ApiKey.objects.get().name == "Renamed feed"
