"""Viewers and Budget managers may look at the event log (read-only for everyone)."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from ads.roles import sync_roles


def update_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("ads", "0014_event_log")]

    operations = [migrations.RunPython(update_roles, migrations.RunPython.noop)]
