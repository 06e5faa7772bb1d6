"""Changes made by people in the admin: saved with only the fields a person edits,
audited with old and new values, and followed at once by the campaigns' states.
"""

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from ads.models import (
    Brand,
    Campaign,
    Schedule,
    SettingChange,
)
from ads.money import canonical
from ads.rules import (
    schedule_summary,
)
from ads.services.enforcement import (
    RefreshResult,
    _lock_brands,
    load_windows,
    refresh_campaign_states,
)

logger = logging.getLogger(__name__)


# --- Changes made by people (admin) -------------------------------------------------

BRAND_AUDITED_FIELDS = ("name", "timezone", "daily_budget", "monthly_budget", "is_active")
CAMPAIGN_AUDITED_FIELDS = ("name", "is_enabled", "daily_budget", "schedule")


def save_brand(
    brand: Brand, *, changed_fields: Iterable[str], actor: str, at: datetime
) -> RefreshResult:
    """Save a brand edited by a person: audit what changed, re-evaluate its campaigns."""
    with transaction.atomic():
        old = _lock_brands([brand.pk])[0] if brand.pk else None
        if old is None:
            brand.save()
        else:
            # Only what a person edits: the instance was read before the lock, and its
            # counters and period markers may be stale by now.
            fields = list(BRAND_AUDITED_FIELDS)
            if old.timezone != brand.timezone:
                # The counters' day and month are the old zone's; recompute them.
                brand.counters_day = brand.counters_month = None
                fields += ["counters_day", "counters_month"]
            brand.save(update_fields=fields)
        if old is not None:
            _audit_settings(old, brand, changed_fields, BRAND_AUDITED_FIELDS, actor=actor, at=at)
        return refresh_campaign_states(at=at, actor=actor, brand_ids=[brand.pk])


def save_campaign(
    campaign: Campaign, *, changed_fields: Iterable[str], actor: str, at: datetime
) -> RefreshResult:
    """Save a campaign edited by a person: audit what changed, re-evaluate its state."""
    with transaction.atomic():
        _lock_brands([campaign.brand_id])
        old = Campaign.objects.filter(pk=campaign.pk).first() if campaign.pk else None
        # Only what a person edits: counters and state may have moved since the read.
        campaign.save(update_fields=None if old is None else CAMPAIGN_AUDITED_FIELDS)
        if old is not None:
            _audit_settings(
                old, campaign, changed_fields, CAMPAIGN_AUDITED_FIELDS, actor=actor, at=at
            )
        return refresh_campaign_states(at=at, actor=actor, brand_ids=[campaign.brand_id])


def set_campaigns_enabled(
    campaign_ids: Sequence[int], *, enabled: bool, actor: str, at: datetime
) -> RefreshResult:
    """A person's switch: enable or disable campaigns, audited, states updated at once."""
    with transaction.atomic():
        brand_ids = list(
            Campaign.objects.filter(pk__in=campaign_ids).values_list("brand_id", flat=True)
        )
        _lock_brands(sorted(set(brand_ids)))
        to_change = list(Campaign.objects.filter(pk__in=campaign_ids).exclude(is_enabled=enabled))
        Campaign.objects.filter(pk__in=[c.pk for c in to_change]).update(is_enabled=enabled)
        SettingChange.objects.bulk_create(
            SettingChange(
                changed_at=at,
                actor=actor,
                object_type="campaign",
                object_id=c.pk,
                object_repr=str(c.name),
                field="is_enabled",
                old_value=str(c.is_enabled),
                new_value=str(enabled),
            )
            for c in to_change
        )
        return refresh_campaign_states(at=at, actor=actor, brand_ids=brand_ids)


def schedule_saved(
    schedule: Schedule, *, old: Schedule | None, old_windows: str, actor: str, at: datetime
) -> RefreshResult:
    """After a person saved a schedule and its windows: audit the change and bring
    every campaign on the schedule up to date (an opening window resumes at once)."""
    with transaction.atomic():
        # From the database: the admin's instance may hold prefetched, older windows.
        windows = schedule_summary(load_windows([schedule.pk]).get(schedule.pk, []))
        if old is not None:
            _audit_settings(old, schedule, ["name"], ("name",), actor=actor, at=at)
            if windows != old_windows:
                SettingChange.objects.create(
                    changed_at=at,
                    actor=actor,
                    object_type="schedule",
                    object_id=schedule.pk,
                    object_repr=str(schedule)[:300],
                    field="windows",
                    old_value=old_windows,
                    new_value=windows,
                )
        brand_ids = Campaign.objects.filter(schedule=schedule).values_list("brand_id", flat=True)
        return refresh_campaign_states(at=at, actor=actor, brand_ids=list(set(brand_ids)))


def _audit_settings(
    old: Brand | Campaign | Schedule,
    new: Brand | Campaign | Schedule,
    changed_fields: Iterable[str],
    audited: Sequence[str],
    *,
    actor: str,
    at: datetime,
) -> None:
    rows = []
    for field in audited:
        before, after = getattr(old, field), getattr(new, field)
        if field in changed_fields and before != after:
            rows.append(
                SettingChange(
                    changed_at=at,
                    actor=actor,
                    object_type=new._meta.model_name or "",
                    object_id=new.pk,
                    object_repr=str(new)[:300],
                    field=field,
                    old_value=_audit_text(before),
                    new_value=_audit_text(after),
                )
            )
    SettingChange.objects.bulk_create(rows)


def _audit_text(value: object) -> str:
    if value is None:
        return ""
    return str(canonical(value)) if isinstance(value, Decimal) else str(value)
