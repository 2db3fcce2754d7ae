"""Which database errors are an outage (the 503 page) and which are a failed statement (a 500)."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, transaction

from mistersmith.web.unavailable import database_away

pytestmark = pytest.mark.django_db


def test_a_cancelled_statement_is_an_error_of_the_request_not_an_outage():
    with pytest.raises(OperationalError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1")
        cursor.execute("SELECT pg_sleep(1)")
    assert caught.value.__cause__.sqlstate == "57014"
    assert not database_away(caught.value)


def test_a_refused_connection_is_an_outage():
    import psycopg

    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect("postgresql://nobody@127.0.0.1:9/none", connect_timeout=1)
    wrapped = OperationalError(str(caught.value))
    wrapped.__cause__ = caught.value
    assert database_away(wrapped)
    assert not database_away(ValueError("not a database error"))
