"""A run's link to its version and its id are part of what the MLflow API renders for the
version's model (``run_id``): a change bumps the model's ``ModelRevision``, through the function
of models_app migration 0013. PostgreSQL only, like that migration."""

from django.db import migrations

TRIGGER = """
DROP TRIGGER IF EXISTS trainingrun_revision ON lineage_app_trainingrun;
CREATE CONSTRAINT TRIGGER trainingrun_revision
    AFTER INSERT OR DELETE ON lineage_app_trainingrun
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION models_app_revision_of_version();
-- Runs are saved often while they log (status, metrics); only these two columns render.
DROP TRIGGER IF EXISTS trainingrun_revision_update ON lineage_app_trainingrun;
CREATE CONSTRAINT TRIGGER trainingrun_revision_update
    AFTER UPDATE OF version_id, external_id ON lineage_app_trainingrun
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.version_id IS DISTINCT FROM NEW.version_id OR OLD.external_id IS DISTINCT FROM NEW.external_id)
    EXECUTE FUNCTION models_app_revision_of_version();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP TRIGGER IF EXISTS trainingrun_revision ON lineage_app_trainingrun;"
            "DROP TRIGGER IF EXISTS trainingrun_revision_update ON lineage_app_trainingrun;"
        )


class Migration(migrations.Migration):

    dependencies = [
        ("lineage_app", "0002_mlflow_tracking"),
        ("models_app", "0013_model_revision"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
