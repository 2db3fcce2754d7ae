"""Hive models live on the hive files, nothing else does, and nothing is migrated there."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connections, router

from hive.models import CollectiveMemory, HiveAgent, MemoryEntry, Swarm, Task
from hive.routers import HiveRouter
from hive.schema import HIVE_TABLES, MEMORY_TABLES

HIVE_FILE_MODELS = [model for model in apps.get_app_config("hive").get_models() if model is not MemoryEntry]


@pytest.mark.parametrize("model", HIVE_FILE_MODELS, ids=lambda model: model.__name__)
def test_hive_db_models_read_and_write_hive(model):
    assert router.db_for_read(model) == "hive"
    assert router.db_for_write(model) == "hive"


def test_memory_entries_go_to_the_memory_file():
    assert router.db_for_read(MemoryEntry) == "hive_memory"
    assert router.db_for_write(MemoryEntry) == "hive_memory"


def test_every_other_model_is_left_to_default():
    others = [model for model in apps.get_models() if model._meta.app_label != "hive"]
    assert others
    assert all(HiveRouter().db_for_read(model) is None for model in others)
    assert all(HiveRouter().db_for_write(model) is None for model in others)
    assert router.db_for_read(User) == "default"


@pytest.mark.parametrize("app_label", ["hive", "auth", "contenttypes", "admin", "sessions", "supervision", "agents"])
@pytest.mark.parametrize("db", ["hive", "hive_memory"])
def test_nothing_migrates_on_the_hive_aliases(db, app_label):
    assert HiveRouter().allow_migrate(db, app_label) is False


def test_the_hive_app_never_migrates_on_default_while_the_rest_does():
    assert HiveRouter().allow_migrate("default", "hive", model_name="swarm") is False
    assert HiveRouter().allow_migrate("default", "auth", model_name="user") is True
    assert not router.allow_migrate_model("default", Swarm)
    assert router.allow_migrate_model("default", User)


def test_relations_stay_within_one_file():
    swarm, agent, task = Swarm(id="s"), HiveAgent(id="a"), Task(id="t")
    assert HiveRouter().allow_relation(agent, swarm) is True
    assert HiveRouter().allow_relation(task, CollectiveMemory(id="m")) is True
    assert HiveRouter().allow_relation(swarm, MemoryEntry(id=1)) is False
    assert HiveRouter().allow_relation(swarm, User(id=1)) is False
    assert HiveRouter().allow_relation(User(id=1), User(id=2)) is None


@pytest.mark.django_db(databases=["default", "hive", "hive_memory"])
def test_the_hive_tables_exist_on_the_hive_files_only():
    # The runtime's own ``agents`` table lives on default (another app's model): only the rest is hive-only.
    others = {model._meta.db_table for model in apps.get_models() if model._meta.app_label != "hive"}
    hive_only = (set(HIVE_TABLES) | set(MEMORY_TABLES)) - others
    assert hive_only
    assert not set(connections["default"].introspection.table_names()) & hive_only
    assert set(HIVE_TABLES) <= set(connections["hive"].introspection.table_names())
    assert set(MEMORY_TABLES) <= set(connections["hive_memory"].introspection.table_names())
