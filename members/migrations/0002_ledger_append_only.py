"""On PostgreSQL, the database itself refuses UPDATE and DELETE on the points ledger."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION members_pointsentry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the points ledger is append-only: % refused on members_pointsentry', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER members_pointsentry_append_only
    BEFORE UPDATE OR DELETE ON members_pointsentry
    FOR EACH ROW EXECUTE FUNCTION members_pointsentry_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS members_pointsentry_append_only ON members_pointsentry;
DROP FUNCTION IF EXISTS members_pointsentry_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("members", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
