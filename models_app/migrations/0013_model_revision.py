"""``ModelRevision``: a per-model number that changes, at commit, with anything the MLflow API
renders for the model (see the model's docstring). PostgreSQL only, like 0006 and 0011: other
databases get the table and no triggers, and the MLflow API renders there without copies.

- A model's insert adds its row and its delete removes it (immediate triggers), a TRUNCATE of
  the models empties the table.
- Changes to the model row, its versions, tags and aliases, and a user's new name, bump the
  number through deferred constraint triggers: they run when the transaction commits, after
  every lock the transaction's own statements took, and lock only revision rows, which nothing
  else locks. So a bump never waits on a writer's lock (two commits that each bump several
  models, in opposite orders, are the one way left to deadlock; PostgreSQL then cancels one).
  A transaction bumps a model once, however many of its rows it changed: a revision row the
  transaction has already written (its ``xmin`` is the transaction's id) is left alone.
- Runs (``lineage_app``) bump it from lineage migration 0003, through the same function.

Existing models get their rows here.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import migrations, models

import django.db.models.deletion

MODELS = "models_app_registeredmodel"
REVISIONS = "models_app_modelrevision"
SEQUENCE = "models_app_modelrevision_seq"
# The tables whose rows bump their model, and the trigger function that finds it.
CHILDREN = {
    "models_app_modelversion": "models_app_revision_of_model",
    "models_app_modeltag": "models_app_revision_of_model",
    "models_app_modelalias": "models_app_revision_of_model",
    "models_app_versiontag": "models_app_revision_of_version",
}

# Skip a revision row this transaction has already written (its xmin is our transaction id).
_NOT_YET = "xmin <> pg_current_xact_id()::xid"


def _on_child(function: str, column: str, bump: str) -> str:
    """A deferred trigger function for rows that point at a model through ``column``: ``bump``
    the old row's target on UPDATE/DELETE, and the new row's on INSERT or a changed target."""
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM {bump}(OLD.{column});
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{column} IS DISTINCT FROM OLD.{column}) THEN
        PERFORM {bump}(NEW.{column});
    END IF;
    RETURN NULL;
END $$;
"""


FUNCTIONS = f"""
CREATE SEQUENCE IF NOT EXISTS {SEQUENCE};

CREATE OR REPLACE FUNCTION models_app_revision_bump(target bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE {REVISIONS} SET revision = nextval('{SEQUENCE}') WHERE model_id = target AND {_NOT_YET}
$$;

CREATE OR REPLACE FUNCTION models_app_revision_bump_version(target bigint) RETURNS void
LANGUAGE sql AS $$
    SELECT models_app_revision_bump((SELECT model_id FROM models_app_modelversion WHERE id = target))
$$;

-- The model's own row: its revision row comes and goes with it (immediately).
CREATE OR REPLACE FUNCTION models_app_revision_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {REVISIONS} (model_id, revision) VALUES (NEW.id, nextval('{SEQUENCE}'))
        ON CONFLICT (model_id) DO UPDATE SET revision = EXCLUDED.revision;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM {REVISIONS} WHERE model_id = OLD.id;
    ELSE  -- TRUNCATE
        DELETE FROM {REVISIONS};
    END IF;
    RETURN NULL;
END $$;

-- Deferred: a change of the model row.
CREATE OR REPLACE FUNCTION models_app_revision_of_self() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM models_app_revision_bump(NEW.id);
    RETURN NULL;
END $$;
"""
# Deferred: rows with a model_id (versions, model tags, aliases) and rows with a version_id
# (version tags, runs; a version deleted in the same transaction bumped its model itself).
FUNCTIONS += _on_child("models_app_revision_of_model", "model_id", "models_app_revision_bump")
FUNCTIONS += _on_child("models_app_revision_of_version", "version_id", "models_app_revision_bump_version")


def _user_sql(users: str, username: str) -> str:
    """A renamed user: the models they created, or created versions of, render their name."""
    return f"""
CREATE OR REPLACE FUNCTION models_app_revision_of_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM models_app_revision_bump(id)
    FROM (SELECT id FROM {MODELS} WHERE created_by_id = NEW.id
          UNION SELECT model_id FROM models_app_modelversion WHERE created_by_id = NEW.id) AS touched;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS models_app_revision ON {users};
CREATE CONSTRAINT TRIGGER models_app_revision AFTER UPDATE OF {username} ON {users}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.{username} IS DISTINCT FROM NEW.{username})
    EXECUTE FUNCTION models_app_revision_of_user();
"""


def _triggers() -> str:
    sql = f"""
DROP TRIGGER IF EXISTS registeredmodel_revision_row ON {MODELS};
CREATE TRIGGER registeredmodel_revision_row AFTER INSERT OR DELETE ON {MODELS}
    FOR EACH ROW EXECUTE FUNCTION models_app_revision_row();
DROP TRIGGER IF EXISTS registeredmodel_revision_truncate ON {MODELS};
CREATE TRIGGER registeredmodel_revision_truncate AFTER TRUNCATE ON {MODELS}
    FOR EACH STATEMENT EXECUTE FUNCTION models_app_revision_row();
DROP TRIGGER IF EXISTS registeredmodel_revision ON {MODELS};
CREATE CONSTRAINT TRIGGER registeredmodel_revision AFTER UPDATE ON {MODELS}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION models_app_revision_of_self();
"""
    for table, function in CHILDREN.items():
        name = table.removeprefix("models_app_") + "_revision"
        sql += f"""
DROP TRIGGER IF EXISTS {name} ON {table};
CREATE CONSTRAINT TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {function}();
"""
    return sql


DROP = f"""
DROP TRIGGER IF EXISTS registeredmodel_revision_row ON {MODELS};
DROP TRIGGER IF EXISTS registeredmodel_revision_truncate ON {MODELS};
DROP TRIGGER IF EXISTS registeredmodel_revision ON {MODELS};
{"".join(f"DROP TRIGGER IF EXISTS {t.removeprefix('models_app_')}_revision ON {t};" for t in CHILDREN)}
DROP FUNCTION IF EXISTS models_app_revision_of_user() CASCADE;
DROP FUNCTION IF EXISTS models_app_revision_of_version();
DROP FUNCTION IF EXISTS models_app_revision_of_model();
DROP FUNCTION IF EXISTS models_app_revision_of_self();
DROP FUNCTION IF EXISTS models_app_revision_row();
DROP FUNCTION IF EXISTS models_app_revision_bump_version(bigint);
DROP FUNCTION IF EXISTS models_app_revision_bump(bigint);
DROP SEQUENCE IF EXISTS {SEQUENCE};
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    user = apps.get_model(settings.AUTH_USER_MODEL)
    # Historical models have no USERNAME_FIELD: the current model names the field.
    username = user._meta.get_field(get_user_model().USERNAME_FIELD).column
    qn = schema_editor.quote_name
    schema_editor.execute(FUNCTIONS)
    schema_editor.execute(_triggers())
    schema_editor.execute(_user_sql(qn(user._meta.db_table), qn(username)))
    schema_editor.execute(
        f"INSERT INTO {REVISIONS} (model_id, revision) SELECT id, nextval('{SEQUENCE}') FROM {MODELS} "
        "ON CONFLICT (model_id) DO NOTHING"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ("models_app", "0012_version_ready_hooks_done"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ModelRevision",
            fields=[
                (
                    "model",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="models_app.registeredmodel",
                    ),
                ),
                ("revision", models.BigIntegerField()),
            ],
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
