"""The two roles of SPEC section 10, as groups with model permissions.

Budget managers change brands, campaigns and schedules; Viewers only look. Neither
gets change rights on the ledger or the audit tables (the admin refuses those to
everyone) nor on periodic tasks (superusers only).
"""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

MANAGED = ("brand", "campaign", "schedule")
VIEWED = ("brand", "campaign", "schedule", "spendevent", "campaignstatuschange", "settingchange")
ROLES = {
    "Budget managers": [f"{action}_{model}" for model in MANAGED for action in ("add", "change")]
    + [f"view_{model}" for model in VIEWED]
    + ["delete_schedule"],
    "Viewers": [f"view_{model}" for model in VIEWED],
}


def create_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Permissions are normally created after all migrations; create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.set(
            permission_model.objects.filter(content_type__app_label="ads", codename__in=codenames)
        )


def remove_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ads", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
