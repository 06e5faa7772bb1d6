from decimal import Decimal

from django.contrib.auth.models import Group, User
from factory.declarations import Sequence, SubFactory
from factory.django import DjangoModelFactory, Password
from factory.helpers import post_generation

from ads.models import Brand, Campaign, Schedule


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


class CampaignFactory(DjangoModelFactory[Campaign]):
    class Meta:
        model = Campaign

    brand = SubFactory(BrandFactory)
    name = Sequence(lambda n: f"Campaign {n}")


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
