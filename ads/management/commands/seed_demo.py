"""Load a small demo data set: brands in several time zones and currencies, some near
their budget."""

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from ads.models import Brand, Campaign, Schedule, ScheduleWindow, SpendEvent
from ads.money import format_money, minor_units
from ads.rules import EVERY_DAY, local_date, weekday_mask
from ads.services import record_spend, refresh_campaign_states


@dataclass(frozen=True)
class DemoBrand:
    name: str
    zone: str
    currency: str
    daily: str
    monthly: str
    campaigns: tuple[tuple[str, str | None], ...]  # (name, own daily budget)
    spend_share: str  # share of the daily budget spent today
    is_active: bool = True


DEMO = (
    DemoBrand(
        "Northwind Coffee",
        "America/New_York",
        "USD",
        "500.00",
        "12000.00",
        (
            ("Search - Brand terms", None),
            ("Display - Retargeting", "150.00"),
            ("Video - Autumn", None),
        ),
        "0.92",
    ),
    DemoBrand(
        "Sakura Cosmetics",
        "Asia/Tokyo",
        "JPY",  # no minor unit: whole yen
        "80000",
        "2000000",
        (("Search - Generic", None), ("Social - Launch", None)),
        "1.00",
    ),
    DemoBrand(
        "Lindqvist Outdoor",
        "Europe/Stockholm",
        "EUR",
        "300.00",
        "8000.00",
        (("Search - Tents", "60.00"), ("Shopping - All products", None)),
        "0.45",
    ),
    DemoBrand(
        "Himalaya Treks",
        "Asia/Kathmandu",
        "USD",
        "50.00",
        "1200.00",
        (("Search - Trekking", None),),
        "0.20",
    ),
    DemoBrand(
        "Gulf Pearl Jewellery",
        "Asia/Kuwait",
        "KWD",  # three decimal places (fils)
        "150.000",
        "4000.000",
        (("Search - Pearls", "40.500"), ("Social - Gifts", None)),
        "0.80",
    ),
    DemoBrand(
        "Harbour Books",
        "Europe/London",
        "GBP",
        "120.00",
        "3000.00",
        (("Search - Bestsellers", None), ("Display - Prospecting", None)),
        "0.10",
        is_active=False,
    ),
)
SPENDS_PER_BRAND = 20
DISABLED_BY_A_PERSON = {"Video - Autumn"}
WEEKDAYS, WEEKEND = weekday_mask(range(5)), weekday_mask([5, 6])
SCHEDULES = {
    "Business hours": [(WEEKDAYS, time(9), time(17))],
    "Evenings and weekends": [(WEEKDAYS, time(18), time(23)), (WEEKEND, time(10), time(22))],
    "Late night": [(EVERY_DAY, time(22), time(2))],
}
SCHEDULED = {
    "Display - Retargeting": "Business hours",
    "Shopping - All products": "Evenings and weekends",
    "Social - Launch": "Late night",
}


def bar(share: Decimal, width: int = 20) -> str:
    filled = min(width, int(share * width))
    return "#" * filled + "." * (width - filled)


class Command(BaseCommand):
    help = "Load demo brands, campaigns and today's spend. Safe to run again: nothing doubles."

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verbosity"] < 2:
            logging.getLogger("ads.services").setLevel(logging.WARNING)
        now = timezone.now()
        schedules = {}
        for name, windows in SCHEDULES.items():
            schedules[name], created = Schedule.objects.get_or_create(name=name)
            if created:
                ScheduleWindow.objects.bulk_create(
                    ScheduleWindow(schedule=schedules[name], weekdays=days, start=start, end=end)
                    for days, start, end in windows
                )
        for n, demo in enumerate(DEMO, start=1):
            self.stdout.write(
                f"[{n}/{len(DEMO)}] {demo.name} ({demo.zone}, {demo.currency}) ...", ending=""
            )
            with transaction.atomic():
                brand, _ = Brand.objects.get_or_create(
                    name=demo.name,
                    defaults={
                        "timezone": demo.zone,
                        "currency": demo.currency,
                        "daily_budget": Decimal(demo.daily),
                        "monthly_budget": Decimal(demo.monthly),
                        "is_active": demo.is_active,
                    },
                )
                campaigns = [
                    Campaign.objects.get_or_create(
                        brand=brand,
                        name=name,
                        defaults={
                            "daily_budget": Decimal(own) if own else None,
                            "is_enabled": name not in DISABLED_BY_A_PERSON,
                            "schedule": schedules.get(SCHEDULED.get(name, "")),
                        },
                    )[0]
                    for name, own in demo.campaigns
                ]
            refresh_campaign_states(at=now, actor="seed_demo", brand_ids=[brand.pk])
            # The same keys on the same local day: running the command again adds nothing.
            day = local_date(now, brand.zone)
            # Whole yen, cents, fils: as a platform would report them in this currency.
            smallest = Decimal(1).scaleb(-minor_units(brand.currency))
            amount = (brand.daily_budget * Decimal(demo.spend_share) / SPENDS_PER_BRAND).quantize(
                smallest
            )
            recorded = 0
            keys = [f"demo-{brand.pk}-{day}-{i}" for i in range(SPENDS_PER_BRAND)]
            # Keys already recorded today are skipped, not re-sent: a budget edited
            # since would change the amount and make the same key a conflict.
            done = set(SpendEvent.objects.filter(idempotency_key__in=keys).values_list(
                "idempotency_key", flat=True
            ))  # fmt: skip
            for i, key in enumerate(keys):
                if amount > 0 and key not in done:
                    record_spend(
                        campaigns[i % len(campaigns)].pk,
                        amount,
                        idempotency_key=key,
                        currency=brand.currency,
                        at=now,
                    )
                    recorded += 1
            self.stdout.write(f" {len(campaigns)} campaigns, {recorded} new spends")

        self.stdout.write("\nToday's spend against daily budget (local day of each brand):")
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for brand in Brand.objects.order_by("name"):
            totals[brand.currency] += brand.current_daily_spend
            share = (
                brand.current_daily_spend / brand.daily_budget if brand.daily_budget else Decimal(1)
            )
            running = brand.campaigns.filter(is_active=True).count()
            paused = brand.campaigns.filter(is_active=False).count()
            self.stdout.write(
                f"  {brand.name:<20} {bar(share)} {share:>5.0%}  "
                f"{format_money(brand.current_daily_spend, brand.currency):>11} of "
                f"{format_money(brand.daily_budget, brand.currency):>11}  "
                f"{running} running, {paused} paused"
            )
        # Never one sum across currencies: nothing converts yen into dollars.
        by_currency = ", ".join(format_money(totals[code], code) for code in sorted(totals))
        self.stdout.write(f"Spend today by currency: {by_currency}")
