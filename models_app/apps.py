from django.apps import AppConfig


class ModelsAppConfig(AppConfig):
    name = "models_app"
    verbose_name = "Catalog"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.db.backends.signals import connection_created

        from models_app.checks import sqlite_is_recent_enough
        from models_app.search import register_sqlite_functions

        checks.register(sqlite_is_recent_enough)  # reads the driver, not the database

        # SQLite has no pg_trgm: the catalog's fuzzy match runs as a Python SQL function there.
        connection_created.connect(register_sqlite_functions, dispatch_uid="modelyard_sqlite_functions")
