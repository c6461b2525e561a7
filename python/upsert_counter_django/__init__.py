"""Django helpers for the upsert_counter PostgreSQL extension, and the same
API without it.

    from upsert_counter_django import upsert_increment, upsert_increment_many

    created = upsert_increment(AbTestHourlyLog,
                               keys={"ab_test": ab_test, "version": "control",
                                     "date": today, "hour": 13},
                               deltas={"participants": 1})

Two modes, chosen per database connection (``mode(using)`` says which):

* **extension**: ``CREATE EXTENSION upsert_counter`` ran in the database.
  Each call is one call of the extension (cached plan, server-side merge).
* **sql**: the extension is absent (managed PostgreSQL).  The helper writes
  the ``INSERT ... ON CONFLICT (key) DO UPDATE SET n = COALESCE(t.n, 0) +
  EXCLUDED.n`` statement itself, merges duplicate keys of a batch in
  Python and sends them in key order.  Same API, same results.

``UPSERT_COUNTER_MODE`` in settings (``"auto"``, ``"extension"``,
``"sql"``, or a dict by database alias) overrides the detection.  Add
``"upsert_counter_django"`` to ``INSTALLED_APPS`` for the system check
that reports the mode (``manage.py check --database default``).

A migration creates the extension where the role may
(``upsert_counter_django.operations.CreateUpsertCounterExtension``).

Keys and columns are model field names (``ab_test``) or attnames
(``ab_test_id``); a foreign key takes a model instance or its id.  Fields a
call does not name behave as ``Model.save()`` would on insert.  See the
README's Django section for every argument, error and guarantee.
"""

from django.core.exceptions import FieldDoesNotExist

from ._api import (DEFAULT_CHUNK_SIZE, DEFAULT_WINDOW, aupsert_increment, aupsert_increment_many,
                   aupsert_increment_returning, aupsert_rollup, upsert_increment,
                   upsert_increment_many, upsert_increment_returning, upsert_rollup)
from ._connection import mode, reset_mode
from ._manager import UpsertCounterManager, UpsertCounterQuerySet
from .operations import CreateUpsertCounterExtension, UpsertCounterWarning

__all__ = [
    "upsert_increment", "upsert_increment_returning", "upsert_increment_many",
    "upsert_rollup", "aupsert_increment", "aupsert_increment_returning",
    "aupsert_increment_many", "aupsert_rollup", "mode", "reset_mode", "UpsertCounterQuerySet",
    "UpsertCounterManager", "CreateUpsertCounterExtension", "UpsertCounterWarning",
    "FieldDoesNotExist", "DEFAULT_CHUNK_SIZE", "DEFAULT_WINDOW",
]

__version__ = "1.3.0"
