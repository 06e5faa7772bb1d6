"""GET /campaigns and /campaigns/{id}: state, pause reasons and schedule."""

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Status

from ads.api.auth import caller
from ads.api.errors import one_or_404, unknown_query
from ads.api.schemas import CampaignFilters, CampaignOut, ErrorOut, Id, money
from ads.models import Campaign
from ads.rules import next_schedule_change, schedule_summary
from ads.selectors import visible_campaigns

router = Router()


def campaign_out(campaign: Campaign) -> dict[str, object]:
    now = timezone.now()
    windows = campaign.schedule.rule_windows() if campaign.schedule else None
    return {
        "id": campaign.pk,
        "brand_id": campaign.brand_id,
        "name": campaign.name,
        "is_enabled": campaign.is_enabled,
        "is_active": campaign.is_active,
        "pause_reasons": [str(r) for r in campaign.pause_reasons],
        "currency": campaign.brand.currency,
        "daily_budget": money(campaign.daily_budget) if campaign.daily_budget is not None else None,
        "daily_spend": money(campaign.spend_today(now)),
        "schedule": schedule_summary(windows) if windows is not None else None,
        "next_schedule_change": next_schedule_change(windows, now, campaign.brand.zone),
    }


@router.get(
    "/campaigns", response={200: list[CampaignOut], 400: ErrorOut, 401: ErrorOut, 422: ErrorOut}
)
def list_campaigns(request: HttpRequest, filters: Query[CampaignFilters]) -> Status[object]:
    if unknown := unknown_query(request, CampaignFilters, "filter"):
        return unknown  # a misspelt filter must not silently return every campaign
    # Lists leave out what is archived; its own URL still answers.
    campaigns = visible_campaigns(caller(request)).filter(
        archived_at__isnull=True, brand__archived_at__isnull=True
    )
    if filters.brand is not None:
        campaigns = campaigns.filter(brand_id=filters.brand)
    if filters.active is not None:
        campaigns = campaigns.filter(is_active=filters.active)
    return Status(200, [campaign_out(c) for c in campaigns])


@router.get(
    "/campaigns/{campaign_id}",
    response={200: CampaignOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
)
def get_campaign(request: HttpRequest, campaign_id: Id) -> Status[object]:
    visible = visible_campaigns(caller(request))
    return one_or_404(visible, campaign_id, campaign_out, what="campaign")
