"""The admin site: the dashboard as its front page, and who may log in."""

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from ads.dashboard import dashboard
from ads.roles import ROLES


def may_use_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Staff, or a member of one of the roles: putting a person in Viewers or Budget
    managers is enough, with no separate "staff status" to remember."""
    if not user.is_active:
        return False
    if getattr(user, "is_staff", False):
        return True
    groups = getattr(user, "groups", None)
    return groups is not None and groups.filter(name__in=ROLES).exists()


class RoleAuthenticationForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user: User) -> None:
        if not may_use_admin(user):
            super().confirm_login_allowed(user)  # refuses with Django's own message


class BudgetAdminSite(admin.AdminSite):
    """The admin site, whose index answers the morning questions first: which brands
    are near or over budget, what paused lately and why, spend per hour today, and
    whether the periodic tasks ran."""

    site_header = "Ad Budget Guard"
    site_title = "Ad Budget Guard"
    index_title = "Today at a glance"
    index_template = "ads/admin/dashboard.html"
    login_form = RoleAuthenticationForm
    # The wide lists (budget bars, pause reasons) need the width more than a second
    # copy of the index; breadcrumbs and the front page lead everywhere.
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        return may_use_admin(request.user)

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = dict(extra_context or {})
        if request.user.has_perm("ads.view_brand"):
            context |= dashboard(timezone.now(), can_view=request.user.has_perm)
        return super().index(request, context)
