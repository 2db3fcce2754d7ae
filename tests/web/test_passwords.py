"""Logins hash the password without holding a pooled database connection (issue 14, item 10)."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import check_password, get_hasher, make_password
from django.db import connection, transaction
from django.urls import reverse

from mistersmith.web.passwords import ConnectionReleasingPBKDF2PasswordHasher


def test_the_default_hasher_is_pbkdf2_and_reads_hashes_made_by_djangos_own():
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    assert isinstance(get_hasher("default"), ConnectionReleasingPBKDF2PasswordHasher)
    stored = PBKDF2PasswordHasher().encode("s3cret-words", "somesalt1234")
    assert stored.startswith("pbkdf2_sha256$")
    assert check_password("s3cret-words", stored) and not check_password("other", stored)
    assert make_password("x").startswith("pbkdf2_sha256$")


@pytest.mark.django_db(transaction=True)
def test_hashing_gives_the_connection_back_outside_a_transaction():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.connection is not None
    make_password("hashed while nobody holds a connection")
    assert connection.connection is None
    with connection.cursor() as cursor:  # the next query takes one again
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_a_transaction_keeps_its_connection_while_hashing(django_user_model):
    with transaction.atomic():
        django_user_model.objects.create_user("in-a-transaction", password="first")
        make_password("inside")
        assert connection.connection is not None and connection.in_atomic_block
    assert django_user_model.objects.filter(username="in-a-transaction").exists()


@pytest.mark.django_db(transaction=True)
def test_login_through_the_form_still_works_and_refuses_a_wrong_password(client, django_user_model):
    django_user_model.objects.create_user("operator", password="correct horse", is_staff=True)
    login = reverse("admin:login")
    wrong = client.post(login, {"username": "operator", "password": "wrong", "next": "/admin/"})
    assert wrong.status_code == 200 and "_auth_user_id" not in client.session
    right = client.post(login, {"username": "operator", "password": "correct horse", "next": "/admin/"})
    assert right.status_code == 302 and right["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
