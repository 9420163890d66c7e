from django.apps import AppConfig


class DeploymentsAppConfig(AppConfig):
    name = "deployments_app"
    verbose_name = "Deployments"
    default_auto_field = "django.db.models.BigAutoField"
