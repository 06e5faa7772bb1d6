"""Brands and campaigns can be archived; Budget managers may delete what has no spend."""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from ads.roles import sync_roles


def update_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("ads", "0010_pending_spend")]

    operations = [
        migrations.AddField(
            model_name="brand",
            name="archived_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="campaign",
            name="archived_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(update_roles, migrations.RunPython.noop),
    ]
