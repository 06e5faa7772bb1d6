from django.contrib.admin.apps import AdminConfig


class BudgetAdminConfig(AdminConfig):
    """Django's admin, with the dashboard as its front page."""

    default_site = "ads.admin_site.BudgetAdminSite"
