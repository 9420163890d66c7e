"""``rawsql.fetch_each``: independent statements, answered in order, in one round trip on
PostgreSQL (pipeline mode), with Django's errors."""

from __future__ import annotations

import os
import tempfile

import pytest
from django.db import DatabaseError, connection, transaction

from registry_project import rawsql


@pytest.mark.parametrize("prepared", [False, True])
def test_each_statement_gets_its_own_rows_in_order(db, prepared):
    found = rawsql.fetch_each(
        [("SELECT %s, %s", [1, "one"]), ("SELECT %s WHERE 1 = 0", [2]), ("SELECT %s", [3])],
        prepared=prepared,
    )
    assert found == [[(1, "one")], [], [(3,)]]


def test_an_error_is_django_s_and_the_transaction_rolls_back(db, owner):
    from models_app.models import AuditEvent

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.create(action="kept.only.if.committed")
        rawsql.fetch_each([("SELECT %s", [1]), ("SELECT * FROM no_such_table WHERE 1 = %s", [1])])
    assert not AuditEvent.objects.filter(action="kept.only.if.committed").exists()
    assert rawsql.fetch_each([("SELECT %s", [1]), ("SELECT %s", [2])]) == [[(1,)], [(2,)]]  # usable


def test_on_postgresql_the_statements_travel_together(postgres):
    """libpq's trace of the connection: both statements are sent before the first answer."""
    from psycopg import pq

    rawsql.fetch("SELECT 1", [])  # the test's transaction has begun: no BEGIN in the trace
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            rawsql.fetch_each([("SELECT 101 WHERE 1 = %s", [1]), ("SELECT 202 WHERE 1 = %s", [1])])
        finally:
            pgconn.untrace()
        os.fsync(trace.fileno())
        trace.seek(0)
        messages = [line.split("\t")[:3] for line in trace.read().splitlines()]
    # F = sent by us, B = received; the statements' texts are in their Parse messages.
    parses = [
        i for i, (direction, _size, kind) in enumerate(messages) if direction == "F" and kind == "Parse"
    ]
    first_answer = next(i for i, (direction, _size, _kind) in enumerate(messages) if direction == "B")
    assert len(parses) == 2 and parses[1] < first_answer, messages
