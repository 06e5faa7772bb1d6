from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import Group, User
from factory.declarations import LazyFunction, Sequence, SubFactory
from factory.django import DjangoModelFactory, Password
from factory.helpers import post_generation

from ads.models import Brand, Campaign, Schedule, WebhookEndpoint
from ads.services import refresh_campaign_states
from ads.services.webhooks import new_secret


class BrandFactory(DjangoModelFactory[Brand]):
    class Meta:
        model = Brand

    name = Sequence(lambda n: f"Brand {n}")
    timezone = "UTC"
    daily_budget = Decimal("100.00")
    monthly_budget = Decimal("3000.00")


class ScheduleFactory(DjangoModelFactory[Schedule]):
    class Meta:
        model = Schedule

    name = Sequence(lambda n: f"Schedule {n}")


def evaluate_brand(campaign: Campaign, create: bool, at: datetime | None) -> None:
    """CampaignFactory's `evaluated_at`: the campaign's brand evaluated at `at`."""
    if create and at is not None:
        refresh_campaign_states(at=at, actor="test", brand_ids=[campaign.brand_id])


class CampaignFactory(DjangoModelFactory[Campaign]):
    """`evaluated_at=NOW` also evaluates the new campaign's brand at that instant, as the
    periodic pass would (actor "test"), so the campaign starts in the state the rules
    give it instead of the model's default. The instance is returned as created:
    `refresh_from_db()` reads the evaluated state."""

    class Meta:
        model = Campaign
        skip_postgeneration_save = True

    brand = SubFactory(BrandFactory)
    name = Sequence(lambda n: f"Campaign {n}")

    evaluated_at = post_generation(evaluate_brand)


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = Sequence(lambda n: f"user{n}")
    is_staff = True
    password = Password("a-long-test-password")

    @post_generation
    def groups(self, create: bool, names: list[str] | None) -> None:
        if create and names:
            self.groups.set(Group.objects.filter(name__in=names))


def limit_to_brands(endpoint: WebhookEndpoint, create: bool, chosen: list[Brand] | None) -> None:
    """WebhookEndpointFactory's `brands`: only these brands' events, not all brands'."""
    if create and chosen:
        endpoint.all_brands = False
        endpoint.save(update_fields=["all_brands"])
        endpoint.brands.set(chosen)


class WebhookEndpointFactory(DjangoModelFactory[WebhookEndpoint]):
    """An enabled webhook for every type and brand; give it `url`, and `brands` to limit it."""

    class Meta:
        model = WebhookEndpoint
        skip_postgeneration_save = True

    name = Sequence(lambda n: f"Endpoint {n}")
    all_types = True
    all_brands = True
    secret = LazyFunction(new_secret)

    brands = post_generation(limit_to_brands)
