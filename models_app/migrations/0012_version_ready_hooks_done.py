"""``ModelVersion.ready_hooks_done_at``: when a READY version's hooks (checks, lineage capture)
ran to the end, so a sweep can queue them again for versions whose queueing was lost.

Versions that were READY before this migration are taken as done (at their finalize time):
their hooks were queued then, and sweeping the whole history would re-run every check.
"""

from django.db import migrations, models
from django.db.models import F
from django.db.models.functions import Coalesce, Now


def history_is_done(apps, schema_editor):
    ModelVersion = apps.get_model("models_app", "ModelVersion")
    ModelVersion.objects.filter(status="READY").update(ready_hooks_done_at=Coalesce(F("finalized_at"), Now()))


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0011_search_document_trigger_on_change"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="ready_hooks_done_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(history_is_done, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="modelversion",
            index=models.Index(
                condition=models.Q(("ready_hooks_done_at__isnull", True), ("status", "READY")),
                fields=["finalized_at"],
                name="modelversion_hooks_owed",
            ),
        ),
    ]
