"""Celery adapters of the catalog: ids in, a service call, nothing else."""

from __future__ import annotations

from celery import shared_task


@shared_task(bind=True, acks_late=True, max_retries=5, ignore_result=True)
def version_ready_task(self, version_id: int) -> None:
    """Run what follows a version becoming READY (the hooks in ``MODELYARD_VERSION_READY_HOOKS``)."""
    from models_app.services import model_version_ready_hooks_run

    model_version_ready_hooks_run(version_id=version_id)


@shared_task(acks_late=True, ignore_result=True)
def version_ready_hooks_sweep_task() -> None:
    """Queue the hooks again for READY versions whose queueing was lost (every 10 minutes)."""
    from models_app.services import version_ready_hooks_sweep

    version_ready_hooks_sweep()


@shared_task(acks_late=True, ignore_result=True)
def webhook_deliveries_dispatch_task() -> None:
    """Send due webhook deliveries (after each change, and every 30 s for retries)."""
    from models_app.services_events import deliveries_dispatch

    deliveries_dispatch()
