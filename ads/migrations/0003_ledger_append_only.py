"""Make the spend ledger append-only in the database itself: UPDATE is refused.

DELETE stays possible for the database owner (test teardown, data retention), and is
refused by the admin and blocked by PROTECT foreign keys.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

MESSAGE = "the spend ledger is append-only: rows cannot be updated"

FORWARD = {
    "sqlite": [
        "CREATE TRIGGER ads_spendevent_no_update BEFORE UPDATE ON ads_spendevent "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;"
    ],
    "postgresql": [
        "CREATE FUNCTION ads_spendevent_no_update() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{MESSAGE}'; END; $$;",
        "CREATE TRIGGER ads_spendevent_no_update BEFORE UPDATE ON ads_spendevent "
        "FOR EACH ROW EXECUTE FUNCTION ads_spendevent_no_update();",
    ],
}
BACKWARD = {
    "sqlite": ["DROP TRIGGER ads_spendevent_no_update;"],
    "postgresql": [
        "DROP TRIGGER ads_spendevent_no_update ON ads_spendevent;",
        "DROP FUNCTION ads_spendevent_no_update();",
    ],
}


def run(statements: dict[str, list[str]]) -> object:
    def apply(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("ads", "0002_roles")]

    operations = [migrations.RunPython(run(FORWARD), run(BACKWARD))]
