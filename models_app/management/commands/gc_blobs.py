"""``manage.py gc_blobs [--dry-run] [--grace-hours N]``: remove content no version references."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from models_app.services import blob_gc


class Command(BaseCommand):
    help = (
        "Delete blobs that no version references and no open upload awaits, once older than the grace "
        "period; abort expired uploads; remove stored objects that have no row."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would be removed; remove nothing."
        )
        parser.add_argument("--grace-hours", type=float, default=settings.MODELYARD_GC_GRACE_HOURS)

    def handle(self, *args, **options):
        report = blob_gc(grace=timedelta(hours=options["grace_hours"]), dry_run=options["dry_run"])
        verb = "Would remove" if options["dry_run"] else "Removed"
        self.stdout.write(
            f"{verb} {report.blobs_deleted} blob(s) ({report.bytes_freed} bytes) and "
            f"{report.orphans_deleted} orphaned object(s); {report.uploads_expired} expired upload(s); "
            f"kept {report.kept_in_flight} awaited by open uploads."
        )
