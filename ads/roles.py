"""The two roles of SPEC section 10, as groups with model permissions.

Budget managers change brands, campaigns and schedules; Viewers only look. Neither
gets change rights on the ledger or the audit tables (the admin refuses those to
everyone) nor on periodic tasks (superusers only). Migrations call `sync_roles`
whenever the set of models changes.
"""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions

MANAGED = ("brand", "campaign", "schedule", "schedulewindow")
VIEWED = (*MANAGED, "spendevent", "campaignstatuschange", "settingchange", "budgetalert", "event")
ROLES = {
    "Budget managers": [f"{action}_{model}" for model in MANAGED for action in ("add", "change")]
    + [f"view_{model}" for model in VIEWED]
    # Deleting is refused for anything with spend (archive it instead), so a manager
    # may remove what was created by mistake.
    + ["delete_brand", "delete_campaign", "delete_schedule", "delete_schedulewindow"],
    "Viewers": [f"view_{model}" for model in VIEWED],
}


def sync_roles(apps: Apps) -> None:
    """From a migration: create the permissions, then the groups; safe to repeat."""
    # Permissions are normally created after all migrations have run; create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True  # type: ignore[assignment]  # create_permissions only checks it is set
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_groups(apps)


def sync_groups(apps: Apps) -> None:
    """Create or update the groups from existing permissions; safe to repeat."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.set(
            permission_model.objects.filter(content_type__app_label="ads", codename__in=codenames)
        )
