"""The search document is computed when a model is inserted or its name, description or card
changes, not on every update of the row.

Migration 0006's trigger ran ``to_tsvector`` over the name, description and card (up to 100,000
characters) before every UPDATE of a model: each new version (which bumps the version counter
and ``updated_at``), each stage change, each ``updated_at`` touch. With a 5 KB card that was
~0.65 ms of PostgreSQL CPU per new version (EXPLAIN ANALYZE of the version counter's UPDATE),
for a value that had not changed. The function stays 0006's; only the triggers calling it change.
PostgreSQL-only, like 0006.
"""

from django.db import migrations

TABLE = "models_app_registeredmodel"
FUNCTION = "models_app_registeredmodel_search_document()"

ON_CHANGE = f"""
DROP TRIGGER IF EXISTS registeredmodel_search_document ON {TABLE};
CREATE TRIGGER registeredmodel_search_document
    BEFORE INSERT ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION};
CREATE TRIGGER registeredmodel_search_document_update
    BEFORE UPDATE OF name, description, card ON {TABLE}
    FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name
          OR OLD.description IS DISTINCT FROM NEW.description
          OR OLD.card IS DISTINCT FROM NEW.card)
    EXECUTE FUNCTION {FUNCTION};
"""

ON_EVERY_UPDATE = f"""
DROP TRIGGER IF EXISTS registeredmodel_search_document_update ON {TABLE};
DROP TRIGGER IF EXISTS registeredmodel_search_document ON {TABLE};
CREATE TRIGGER registeredmodel_search_document
    BEFORE INSERT OR UPDATE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION};
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ON_CHANGE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ON_EVERY_UPDATE)


class Migration(migrations.Migration):

    dependencies = [
        ("models_app", "0010_name_pattern_index"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
