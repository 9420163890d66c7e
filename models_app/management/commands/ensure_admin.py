"""``manage.py ensure_admin``: make sure an administrator exists (idempotent).

The password comes from ``MODELYARD_ADMIN_PASSWORD``; without it one is generated and printed
once. An existing admin is left as it is, so reruns never change or reveal a password.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the administrator account if it does not exist yet."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("MODELYARD_ADMIN_USER", "admin"))
        parser.add_argument("--email", default=os.environ.get("MODELYARD_ADMIN_EMAIL", "admin@example.com"))

    def handle(self, *args, **options):
        User = get_user_model()
        username = options["username"]
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Administrator '{username}' already exists; password unchanged.")
            return
        password = os.environ.get("MODELYARD_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=options["email"], password=password)
        if os.environ.get("MODELYARD_ADMIN_PASSWORD"):
            self.stdout.write(
                f"Created administrator '{username}' with the password from MODELYARD_ADMIN_PASSWORD."
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"Created administrator '{username}' with password: {password}\n"
                    "This is shown once. Change it in the admin or set MODELYARD_ADMIN_PASSWORD next time."
                )
            )
