"""Changes made by people in the admin: saved with only the fields a person edits,
audited with old and new values, and followed at once by the campaigns' states.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Sum

from ads.models import Brand, Campaign, Schedule, SettingChange, SpendEvent
from ads.money import format_money
from ads.rules import schedule_summary
from ads.services.enforcement import RefreshResult, refresh_campaign_states
from ads.services.events import record_setting_changes
from ads.services.kernel import audit_row, audit_text, load_windows, lock_brands

logger = logging.getLogger(__name__)


# --- Changes made by people (admin) -------------------------------------------------

# Every field a person edits: saved only when this person changed it, and audited.
BRAND_AUDITED_FIELDS = (
    "name",
    "timezone",
    "currency",
    "daily_budget",
    "monthly_budget",
    "is_active",
    "contact_email",
)
CAMPAIGN_AUDITED_FIELDS = ("name", "is_enabled", "daily_budget", "schedule")


def _edited(changed_fields: Iterable[str], editable: Sequence[str]) -> list[str]:
    changed = set(changed_fields)
    return [field for field in editable if field in changed]


CURRENCY_FIXED = (
    "stays {old}: this brand has spend in {old}, and a ledger or budget must not mix "
    "currencies. To pay in {new}, create a new brand (ad platforms also make a change of "
    "currency a new account)."
)


def currency_change_error(brand_pk: int | None, old: str, new: str) -> str | None:
    """Why a brand cannot change from currency `old` to `new`, or None: a brand's
    currency is fixed once it has spend."""
    if brand_pk is None or old == new:
        return None
    if not SpendEvent.objects.filter(brand_id=brand_pk).exists():
        return None
    return CURRENCY_FIXED.format(old=old, new=new)


def save_brand(
    brand: Brand, *, changed_fields: Iterable[str], actor: str, at: datetime
) -> RefreshResult:
    """Save a brand edited by a person: audit what changed, re-evaluate its campaigns.

    Only `changed_fields` are written: the instance may have been read before the lock
    (counters, period markers) or shown to a person before a colleague's change.
    Raises ValidationError, writing nothing, for a currency change of a brand with
    spend or a budget finer than the currency's minor unit (the admin form says so
    first; this holds under the lock, when a spend has just arrived).
    """
    with transaction.atomic():
        old = lock_brands([brand.pk])[0] if brand.pk else None
        old_currency = old.currency if old is not None else brand.currency
        if "currency" in changed_fields and (
            error := currency_change_error(brand.pk, old_currency, brand.currency)
        ):
            raise ValidationError({"currency": error})
        brand.clean()
        if old is None:
            brand.save()
        else:
            fields = _edited(changed_fields, BRAND_AUDITED_FIELDS)
            if "timezone" in fields and old.timezone != brand.timezone:
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
    """Save a campaign edited by a person: audit what changed, re-evaluate its state.
    Only `changed_fields` are written, as for a brand."""
    with transaction.atomic():
        lock_brands([campaign.brand_id])
        old = Campaign.objects.filter(pk=campaign.pk).first() if campaign.pk else None
        if old is None:
            campaign.save()
        else:
            campaign.save(update_fields=_edited(changed_fields, CAMPAIGN_AUDITED_FIELDS))
        if old is not None:
            _audit_settings(
                old, campaign, changed_fields, CAMPAIGN_AUDITED_FIELDS, actor=actor, at=at
            )
        return refresh_campaign_states(at=at, actor=actor, brand_ids=[campaign.brand_id])


@dataclass(frozen=True, slots=True)
class SwitchResult:
    """What a person's bulk switch did: how many campaigns it switched, the state
    changes that followed, and the campaigns it left alone because someone else had
    switched them since the person's page was opened."""

    switched: int
    refresh: RefreshResult
    conflicts: tuple[str, ...]


SWITCH_CONFLICT = (
    "{campaign}: {verb} by {actor} at {when} UTC, after you opened this page; left as it is"
)


def set_campaigns_enabled(
    campaign_ids: Sequence[int],
    *,
    enabled: bool,
    actor: str,
    at: datetime,
    page_opened_at: datetime | None = None,
) -> SwitchResult:
    """A person's switch: enable or disable campaigns, audited, states updated at once.

    With `page_opened_at` (when the list the person chose from was shown), a campaign
    that someone else switched to the other value since then is left alone and named
    in `conflicts`: the person chose it from a page that no longer tells the truth.
    """
    with transaction.atomic():
        brand_ids = list(
            Campaign.objects.filter(pk__in=campaign_ids).values_list("brand_id", flat=True)
        )
        lock_brands(sorted(set(brand_ids)))
        to_change = list(
            Campaign.objects.filter(pk__in=campaign_ids)
            .exclude(is_enabled=enabled)
            .select_related("brand")  # the audit rows name it
        )
        conflicts: list[str] = []
        if page_opened_at is not None and to_change:
            switched_since = {
                row.object_id: row
                for row in SettingChange.objects.filter(
                    object_type="campaign",
                    object_id__in=[c.pk for c in to_change],
                    field="is_enabled",
                    changed_at__gt=page_opened_at,
                )
                .exclude(actor=actor)
                .order_by("changed_at", "pk")
            }
            for campaign in [c for c in to_change if c.pk in switched_since]:
                row = switched_since[campaign.pk]
                conflicts.append(
                    SWITCH_CONFLICT.format(
                        campaign=campaign.name,
                        verb="enabled" if campaign.is_enabled else "disabled",
                        actor=row.actor,
                        when=f"{row.changed_at.astimezone(UTC):%a %d %b %H:%M}",
                    )
                )
                to_change.remove(campaign)
        Campaign.objects.filter(pk__in=[c.pk for c in to_change]).update(is_enabled=enabled)
        record_setting_changes(
            [
                audit_row(c, "is_enabled", str(c.is_enabled), str(enabled), actor=actor, at=at)
                for c in to_change
            ],
            at=at,
        )
        refresh = refresh_campaign_states(at=at, actor=actor, brand_ids=brand_ids)
        return SwitchResult(switched=len(to_change), refresh=refresh, conflicts=tuple(conflicts))


# --- Archive, restore, delete -------------------------------------------------------

HAS_SPEND = (
    "{name} has {count} spend(s) in the ledger ({total}), and the ledger keeps every "
    "spend, so it cannot be deleted. Archive it instead: it leaves the lists, the "
    "dashboard and enforcement, keeps its spend and history, and can be restored."
)


def spend_blocking_delete(objects: Iterable[Brand | Campaign]) -> list[str]:
    """Why each of these cannot be deleted (it has spend), in words; empty if none.
    One grouped query per kind of object, however many are chosen."""
    reasons = []
    for owner, model in (("brand", Brand), ("campaign", Campaign)):
        chosen = {obj.pk: obj for obj in objects if isinstance(obj, model)}
        if not chosen:
            continue
        ledger = (
            SpendEvent.objects.filter(**{f"{owner}__in": list(chosen)})
            .order_by()
            .values(owner)
            .annotate(count=Count("pk"), total=Sum("amount"))
        )
        for row in sorted(ledger, key=lambda row: row[owner]):
            obj = chosen[row[owner]]
            name = f"{owner.capitalize()} '{obj}'"
            currency = obj.currency if isinstance(obj, Brand) else obj.brand.currency
            total = format_money(row["total"], currency)
            reasons.append(HAS_SPEND.format(name=name, count=row["count"], total=total))
    return reasons


def delete_unspent(objects: Sequence[Brand | Campaign], *, actor: str, at: datetime) -> int:
    """Delete brands or campaigns created by mistake, with their own audit rows (status
    changes, alerts); one with spend is refused (ValidationError naming why). The
    deletion itself is audited."""
    with transaction.atomic():
        brand_ids = sorted({o.pk if isinstance(o, Brand) else o.brand_id for o in objects})
        lock_brands(brand_ids)
        reasons = spend_blocking_delete(objects)
        if reasons:
            raise ValidationError(reasons)
        SettingChange.objects.bulk_create(
            audit_row(obj, "deleted", "", "deleted", actor=actor, at=at) for obj in objects
        )
        for obj in objects:
            obj.delete()
        remaining = list(Brand.objects.filter(pk__in=brand_ids).values_list("pk", flat=True))
        refresh_campaign_states(at=at, actor=actor, brand_ids=remaining)
        return len(objects)


def set_archived(
    objects: Sequence[Brand | Campaign], *, archived: bool, actor: str, at: datetime
) -> RefreshResult:
    """Archive (or restore) brands or campaigns. Archiving also switches them off (a
    brand's master switch, a campaign's `is_enabled`), audited, so nothing archived can
    spend; restoring brings them back switched off, for a person to turn on."""
    with transaction.atomic():
        brand_ids = sorted({o.pk if isinstance(o, Brand) else o.brand_id for o in objects})
        lock_brands(brand_ids)
        rows = []
        # As they are now, under the lock: the admin's instances may be stale.
        brands = Brand.objects.in_bulk([o.pk for o in objects if isinstance(o, Brand)])
        campaigns = Campaign.objects.select_related("brand").in_bulk(
            [o.pk for o in objects if isinstance(o, Campaign)]
        )
        for obj in objects:
            current = brands[obj.pk] if isinstance(obj, Brand) else campaigns[obj.pk]
            if (current.archived_at is not None) == archived:
                continue
            switch = "is_active" if isinstance(obj, Brand) else "is_enabled"
            updates: dict[str, object] = {"archived_at": at if archived else None}
            if archived and getattr(current, switch):
                updates[switch] = False
                rows.append(audit_row(current, switch, "True", "False", actor=actor, at=at))
            type(current)._default_manager.filter(pk=obj.pk).update(**updates)
            rows.append(
                audit_row(current, "archived", str(not archived), str(archived), actor=actor, at=at)
            )
        record_setting_changes(rows, at=at)
        return refresh_campaign_states(at=at, actor=actor, brand_ids=brand_ids)


def schedule_saved(
    schedule: Schedule, *, old: Schedule | None, old_windows: str, actor: str, at: datetime
) -> RefreshResult:
    """After a person saved a schedule and its windows: audit the change and bring
    every campaign on the schedule up to date (an opening window resumes at once)."""
    with transaction.atomic():
        # The brands of the campaigns that follow it: their event streams get the change.
        brand_ids = sorted(
            set(Campaign.objects.filter(schedule=schedule).values_list("brand_id", flat=True))
        )
        lock_brands(brand_ids)
        # From the database: the admin's instance may hold prefetched, older windows.
        windows = schedule_summary(load_windows([schedule.pk]).get(schedule.pk, []))
        if old is not None:
            _audit_settings(old, schedule, ["name"], ("name",), actor=actor, at=at)
            if windows != old_windows:
                row = audit_row(schedule, "windows", old_windows, windows, actor=actor, at=at)
                record_setting_changes([row], at=at)
        return refresh_campaign_states(at=at, actor=actor, brand_ids=brand_ids)


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
                audit_row(new, field, audit_text(before), audit_text(after), actor=actor, at=at)
            )
    record_setting_changes(rows, at=at)
