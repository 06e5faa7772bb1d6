from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from ads.dashboard import dashboard


class BudgetAdminSite(admin.AdminSite):
    """The admin site, whose index answers the morning questions first: which brands
    are near or over budget, what paused lately and why, spend per hour today, and
    whether the periodic tasks ran."""

    site_header = "Ad Budget Guard"
    site_title = "Ad Budget Guard"
    index_title = "Today at a glance"
    index_template = "ads/admin/dashboard.html"
    # The wide lists (budget bars, pause reasons) need the width more than a second
    # copy of the index; breadcrumbs and the front page lead everywhere.
    enable_nav_sidebar = False

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = dict(extra_context or {})
        if request.user.has_perm("ads.view_brand"):
            context |= dashboard(timezone.now(), can_view=request.user.has_perm)
        return super().index(request, context)
