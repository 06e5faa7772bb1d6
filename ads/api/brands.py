"""GET /brands and /brands/{id}: budget standing, on each brand's own clock."""

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Status

from ads.api.auth import caller
from ads.api.errors import one_or_404
from ads.api.schemas import BrandOut, ErrorOut, Id, money
from ads.models import Brand
from ads.rules import over
from ads.selectors import standing, visible_brands

router = Router()


def brand_out(brand: Brand) -> dict[str, object]:
    now = timezone.now()
    today, month = standing(brand, now)
    return {
        "id": brand.pk,
        "name": brand.name,
        "timezone": brand.timezone,
        "currency": brand.currency,
        "is_active": brand.is_active,
        "local_time": now.astimezone(brand.zone),
        "daily_budget": money(brand.daily_budget),
        "monthly_budget": money(brand.monthly_budget),
        "spend_today": money(today.spend),
        "spend_this_month": money(month.spend),
        "left_today": money(today.left),
        "left_this_month": money(month.left),
        "over_today": money(over(today.spend, today.budget)),
        "over_this_month": money(over(month.spend, month.budget)),
        "pacing_today": str(today.pacing),
        "pacing_this_month": str(month.pacing),
    }


@router.get("/brands", response={200: list[BrandOut], 400: ErrorOut, 401: ErrorOut})
def list_brands(request: HttpRequest) -> Status[object]:
    brands = visible_brands(caller(request)).filter(archived_at__isnull=True)
    return Status(200, [brand_out(b) for b in brands])


@router.get(
    "/brands/{brand_id}",
    response={200: BrandOut, 400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut},
)
def get_brand(request: HttpRequest, brand_id: Id) -> Status[object]:
    return one_or_404(visible_brands(caller(request)), brand_id, brand_out, what="brand")
