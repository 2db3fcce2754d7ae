"""The console's PostgreSQL sessions: JIT off (settings.database_session_options).

JIT compiled the tree's and the attention panel's statements on every request (40-70 ms of CPU
each for a few ms of work); these hold that the sessions the pool hands out have it off, and that
DATABASE_URL's own ``?options=`` still decides when it names jit.
"""

import pytest
from django.db import connection

from mistersmith.settings import database_session_options


def test_jit_is_added_to_no_options_or_to_other_options():
    assert database_session_options(None) == "-c jit=off"
    assert database_session_options("") == "-c jit=off"
    assert database_session_options("-c statement_timeout=5000") == "-c statement_timeout=5000 -c jit=off"


def test_options_that_name_jit_are_kept_as_given():
    assert database_session_options("-c jit=on") == "-c jit=on"


@pytest.mark.django_db
def test_the_pooled_session_has_jit_off():
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
