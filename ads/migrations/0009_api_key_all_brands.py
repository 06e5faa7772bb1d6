"""API keys say "all brands" explicitly. Keys made before, with no brands chosen, saw
every brand; they keep doing so."""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def keep_unlimited_keys_unlimited(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    api_key = apps.get_model("ads", "ApiKey")
    api_key.objects.filter(brands__isnull=True).update(all_brands=True)


class Migration(migrations.Migration):
    dependencies = [("ads", "0008_worker_ping")]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="all_brands",
            field=models.BooleanField(
                default=False,
                help_text="Every brand, including brands added later. Otherwise only the "
                "brands chosen below.",
                verbose_name="all brands",
            ),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="brands",
            field=models.ManyToManyField(blank=True, related_name="api_keys", to="ads.brand"),
        ),
        migrations.RunPython(keep_unlimited_keys_unlimited, migrations.RunPython.noop),
    ]
