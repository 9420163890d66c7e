"""The Celery application, configured from Django settings (``CELERY_*``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "registry_project.settings")

app = Celery("modelyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from registry_project.observability import connect_celery_metrics  # noqa: E402 - needs the app's settings

connect_celery_metrics()
