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
MODEL_CHILDREN = ("models_app_modelversion", "models_app_modeltag", "models_app_modelalias")

FUNCTIONS = f"""
CREATE SEQUENCE IF NOT EXISTS {SEQUENCE};

CREATE OR REPLACE FUNCTION models_app_revision_bump(target bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE {REVISIONS} SET revision = nextval('{SEQUENCE}')
    WHERE model_id = target AND xmin <> pg_current_xact_id()::xid
$$;

CREATE OR REPLACE FUNCTION models_app_revision_bump_version(target bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE {REVISIONS} SET revision = nextval('{SEQUENCE}')
    WHERE model_id = (SELECT model_id FROM models_app_modelversion WHERE id = target)
      AND xmin <> pg_current_xact_id()::xid
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

-- Deferred: a row with a model_id (versions, model tags, aliases) inserted, changed or deleted.
CREATE OR REPLACE FUNCTION models_app_revision_of_model() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM models_app_revision_bump(OLD.model_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.model_id IS DISTINCT FROM OLD.model_id) THEN
        PERFORM models_app_revision_bump(NEW.model_id);
    END IF;
    RETURN NULL;
END $$;

-- Deferred: a row with a version_id (version tags, runs). A version deleted in the same
-- transaction bumped its model itself.
CREATE OR REPLACE FUNCTION models_app_revision_of_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM models_app_revision_bump_version(OLD.version_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.version_id IS DISTINCT FROM OLD.version_id) THEN
        PERFORM models_app_revision_bump_version(NEW.version_id);
    END IF;
    RETURN NULL;
END $$;
"""


def _user_sql(users: str, username: str) -> str:
    """A renamed user: the models they created, or created versions of, render their name."""
    return f"""
CREATE OR REPLACE FUNCTION models_app_revision_of_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {REVISIONS} SET revision = nextval('{SEQUENCE}')
    WHERE model_id IN (SELECT id FROM {MODELS} WHERE created_by_id = NEW.id
                       UNION SELECT model_id FROM models_app_modelversion WHERE created_by_id = NEW.id)
      AND xmin <> pg_current_xact_id()::xid;
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
DROP TRIGGER IF EXISTS versiontag_revision ON models_app_versiontag;
CREATE CONSTRAINT TRIGGER versiontag_revision AFTER INSERT OR UPDATE OR DELETE ON models_app_versiontag
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION models_app_revision_of_version();
"""
    for table in MODEL_CHILDREN:
        name = table.removeprefix("models_app_") + "_revision"
        sql += f"""
DROP TRIGGER IF EXISTS {name} ON {table};
CREATE CONSTRAINT TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION models_app_revision_of_model();
"""
    return sql


DROP = f"""
DROP TRIGGER IF EXISTS registeredmodel_revision_row ON {MODELS};
DROP TRIGGER IF EXISTS registeredmodel_revision_truncate ON {MODELS};
DROP TRIGGER IF EXISTS registeredmodel_revision ON {MODELS};
DROP TRIGGER IF EXISTS versiontag_revision ON models_app_versiontag;
{"".join(f"DROP TRIGGER IF EXISTS {t.removeprefix('models_app_')}_revision ON {t};" for t in MODEL_CHILDREN)}
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
