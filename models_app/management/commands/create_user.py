"""``manage.py create_user USERNAME [--password-stdin] [--team TEAM --role ROLE] [--admin]``."""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from models_app.choices import TeamRole
from models_app.models import TeamMembership
from models_app.services import audit_record


class Command(BaseCommand):
    help = "Create a user (or update their team role) for automation. The password is read from stdin."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--password-stdin", action="store_true", help="Read the password from standard input."
        )
        parser.add_argument("--email", default="")
        parser.add_argument("--team", help="Team to join (created if missing).")
        parser.add_argument("--role", choices=TeamRole.values, default=TeamRole.VIEWER)
        parser.add_argument("--admin", action="store_true", help="Make the user an administrator.")

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=options["username"], defaults={"email": options["email"]}
        )
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                raise CommandError("No password on standard input.")
            user.set_password(password)
        elif created:
            user.set_unusable_password()  # sign-in by token only until a password is set
        if options["admin"]:
            user.is_superuser = user.is_staff = True
        user.save()
        if options["team"]:
            team, _ = Group.objects.get_or_create(name=options["team"])
            TeamMembership.objects.update_or_create(team=team, user=user, defaults={"role": options["role"]})
        audit_record(
            actor=None,
            action="user.created" if created else "user.updated",
            obj=user,
            after={
                "username": user.username,
                "admin": user.is_superuser,
                "team": options["team"],
                "role": options["role"],
            },
        )
        self.stdout.write(f"{'Created' if created else 'Updated'} user '{user.username}'.")
