"""``manage.py create_token USER --scopes read,write``: a token for automation, printed once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from models_app import services


class Command(BaseCommand):
    help = "Create a personal access token for USER and print it (only the hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--scopes", default="read", help="Comma-separated: read, write, admin, predict.")
        parser.add_argument("--name", default="cli", help="What the token is for.")
        parser.add_argument("--expires-days", type=int, default=None, help="Lifetime in days.")

    def handle(self, *args, **options):
        try:
            user = get_user_model().objects.get(username=options["username"])
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user named {options['username']!r}.") from exc
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            # The command runs with the rights of the person at the shell: act as the user.
            _token, raw = services.access_token_create(
                actor=user,
                user=user,
                name=options["name"],
                scopes=scopes,
                expires_in_days=options["expires_days"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(raw)
