"""Registered models as MLflow JSON, rendered once per change and kept in the web process.

A page of model search (``mlflow.search_registered_models()`` walks every page; so does a
catalog sync) spends most of its time on what rarely changes: each model's tags, aliases and
latest versions, read through correlated subqueries and turned into JSON. Here a page first
asks only for its models' ids and revisions (``ModelRevision``, which PostgreSQL triggers bump
at the commit of any change to what a model renders) and renders only the models whose
revision this process has not rendered yet. A copy is used only for the exact revision it was
rendered at, so a change is visible to the next request of any process, as without copies.

Copies are made and used only on PostgreSQL (the only database with the triggers), outside any
transaction: inside one, the transaction's own changes are not yet counted in the revision
(bumps happen at commit), and a rolled-back change must never be kept.

A process whose database lacks any of the triggers, or has one disabled, keeps no copies.
Memory is bounded by ``MODELYARD_MLFLOW_RENDER_CACHE_MB`` per web process (0 turns copies off);
the oldest copies go first. bench/README.md has what a page costs with and without them.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)


class RenderedModels:
    """Encoded models keyed by primary key, each with the revision it was rendered at."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._docs: dict[int, tuple[int, bytes]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, pk: int, revision: int | None) -> bytes | None:
        found = self._docs.get(pk)  # one dict read: atomic under the GIL, no lock needed
        if found is None or revision is None or found[0] != revision:
            return None
        return found[1]

    def put(self, pk: int, revision: int | None, doc: bytes) -> None:
        if revision is None or len(doc) > self.max_bytes:
            return
        with self._lock:
            old = self._docs.pop(pk, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._docs[pk] = (revision, doc)
            self._bytes += len(doc)
            while self._bytes > self.max_bytes:  # insertion order: the oldest first
                _pk, (_revision, evicted) = next(iter(self._docs.items()))
                del self._docs[_pk]
                self._bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._docs)


# The triggers of migrations models_app 0013 and lineage_app 0003: without every one of them
# enabled, some change would not bump a revision and a copy would outlive it.
TRIGGERS = (
    "registeredmodel_revision_row",
    "registeredmodel_revision",
    "modelversion_revision",
    "modeltag_revision",
    "modelalias_revision",
    "versiontag_revision",
    "trainingrun_revision",
    "trainingrun_revision_update",
    "models_app_revision",  # on the user table
)

_models: RenderedModels | None = None
_off = False  # the setting is 0, or the triggers are not all in place
_models_lock = threading.Lock()


def _triggers_in_place() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_trigger WHERE tgname = ANY(%s) AND tgenabled <> 'D'", [list(TRIGGERS)]
        )
        return cursor.fetchone()[0] == len(TRIGGERS)


def models() -> RenderedModels | None:
    """This process's copies, or None where they must not be used (see the module docstring)."""
    if _off or connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    if _models is None:
        _start()
    return _models


def _start() -> None:
    """Make this process's copies, once: unless the setting is 0, or the revision triggers are
    not all present and enabled (one disabled for a bulk load and never enabled again would
    leave copies stale), which turns them off for the process's life."""
    global _models, _off
    with _models_lock:
        if _models is not None or _off:
            return
        limit = settings.MODELYARD_MLFLOW_RENDER_CACHE_MB * 1024 * 1024
        if limit > 0 and _triggers_in_place():
            _models = RenderedModels(limit)
            return
        _off = True
        if limit > 0:
            logger.warning(
                "MLflow API: rendered models are not kept in this process: the revision triggers "
                "(%s) are not all present and enabled. Run migrate, or ALTER TABLE ... ENABLE "
                "TRIGGER, and restart.",
                ", ".join(TRIGGERS),
            )


def reset() -> None:
    """Forget every copy, re-read the setting and re-check the triggers (tests, a restore)."""
    global _models, _off
    with _models_lock:
        _models, _off = None, False
