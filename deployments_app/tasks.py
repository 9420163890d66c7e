"""Celery adapters of the deployment services: ids in, the service does the work.

Routed to the ``deployments`` queue (``CELERY_TASK_ROUTES``). All are idempotent: the services
claim work with a compare-and-set on status and generation, so a redelivered message (late
acks, a killed worker) finds the work done or resumes it.
"""

from __future__ import annotations

from celery import shared_task

from deployments_app.backends import TransientDeployError


@shared_task(bind=True, acks_late=True, max_retries=5, ignore_result=True)
def deployment_launch_task(self, deployment_id: int, generation: int) -> None:
    """Build, start and switch to one generation of a deployment."""
    from deployments_app.services import deployment_launch

    try:
        deployment_launch(deployment_id=deployment_id, generation=generation)
    except TransientDeployError as exc:  # engine or artifact store hiccups only
        from deployments_app.models import Deployment

        # Give the claim back so the retry (or reconcile) can take it again at once.
        Deployment.objects.filter(pk=deployment_id, generation=generation).update(lease_until=None)
        raise self.retry(exc=exc, countdown=10 * 2**self.request.retries) from exc


@shared_task(acks_late=True, ignore_result=True)
def deployment_halt_task(deployment_id: int) -> None:
    """Stop the live instance of a stopping deployment (and delete it when asked)."""
    from deployments_app.services import deployment_halt

    deployment_halt(deployment_id=deployment_id)


@shared_task(acks_late=True, ignore_result=True, expires=120)
def deployments_reconcile_task() -> None:
    """Periodic (beat): bring every deployment's observed state to its desired state."""
    from deployments_app.services import deployments_reconcile

    deployments_reconcile()
