"""Django helpers for the upsert_counter PostgreSQL extension.

Three calls, by model field names, with values encoded the way Django stores
them::

    from upsert_counter_django import (
        upsert_increment, upsert_increment_returning, upsert_increment_many)

    created = upsert_increment(AbTestHourlyLog,
                               keys={"ab_test": ab_test, "version": "control",
                                     "date": today, "hour": 13},
                               deltas={"participants": 1})
    obj, created = upsert_increment_returning(AbTestHourlyLog, keys=..., deltas=...)
    summary = upsert_increment_many(AbTestHourlyLog, rows)

Keys and columns are model field names (``ab_test``) or attnames
(``ab_test_id``); a foreign key takes a model instance or its id.  Fields the
call does not name behave as ``Model.save()`` would on insert: their Python
``default`` and ``auto_now_add`` values are sent as insert-only values,
``auto_now`` fields are written on every call, and fields with a database
default (``db_default``), generated fields and the auto primary key are left
to the database.

Errors: an unknown field name raises ``FieldDoesNotExist`` before any SQL
runs; everything the database refuses (a key that matches no unique
constraint, a bad value, a permission) arrives as Django's ``DatabaseError``
subclass carrying PostgreSQL's message, detail and hint.

Written for Django 3.2 to 5.x and psycopg2 or psycopg 3 (tested with
Django 3.2 and psycopg2); needs
``CREATE EXTENSION upsert_counter`` in the database (see the README for the
migration).
"""

import datetime
import decimal
import enum
import itertools
import json
import math
import uuid

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, router
from django.db.models import NOT_PROVIDED
from django.utils import timezone

__all__ = [
    "upsert_increment",
    "upsert_increment_returning",
    "upsert_increment_many",
    "FieldDoesNotExist",
]

__version__ = "1.2.0"

DEFAULT_CHUNK_SIZE = 1000


# ---------------------------------------------------------------------------
# JSON encoding: exact numbers, ISO dates, Django's own value preparation
# ---------------------------------------------------------------------------

def _json_value(value):
    """The JSON text of one value.  Decimals stay exact (JSON numbers with
    their own digits); dates and times are ISO strings that PostgreSQL's
    input functions read; NaN and infinities are refused."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, enum.Enum):
        return _json_value(value.value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError("cannot send %r: not a finite number" % (value,))
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("cannot send %r: not a finite number" % (value,))
        return repr(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return json.dumps(value.isoformat())
    if isinstance(value, datetime.timedelta):
        micros = (value.days * 86400 + value.seconds) * 1000000 + value.microseconds
        return json.dumps("%d microseconds" % micros)
    if isinstance(value, uuid.UUID):
        return json.dumps(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return json.dumps("\\x" + bytes(value).hex())
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError("cannot send a value of type %s" % type(value).__name__)


def _json_object(pairs):
    return "{" + ", ".join(json.dumps(k) + ": " + v for k, v in pairs) + "}"


def _unwrap_adapter(value):
    """Driver adapters Django prepares some values as: JSONField values
    (Django 4.2+), and IP addresses (psycopg2's ``Inet``, psycopg's
    ``ipaddress`` objects); the other prepared values are plain Python
    values."""
    module = type(value).__module__
    if module.startswith(("psycopg", "django")):
        for attr in ("adapted", "obj", "addr"):
            if hasattr(value, attr):
                return _unwrap_adapter(getattr(value, attr))
    if module == "ipaddress":
        return str(value)
    return value


class _Shape:
    """What one model needs for encoding: field lookup by name, attname or
    column, and the implicit values of unnamed fields."""

    def __init__(self, model, connection):
        self.model = model
        self.connection = connection
        self.meta = model._meta
        self.table = connection.ops.quote_name(self.meta.db_table)

    def field(self, name):
        try:
            field = self.meta.get_field(name)
        except FieldDoesNotExist:
            raise FieldDoesNotExist(
                "%s has no field named %r" % (self.meta.object_name, name)) from None
        if not getattr(field, "concrete", False) or getattr(field, "column", None) is None:
            raise FieldDoesNotExist(
                "%s.%s is not a concrete column (a reverse or many-to-many relation?)"
                % (self.meta.object_name, name))
        return field

    def prepare(self, field, value, name, role=None):
        """Django's database value for one field, as JSON text.  A delta
        for an integer field must be whole: Django's own preparation would
        truncate 1.5 to 1, and a counter must never be rounded silently."""
        if role == "deltas":
            _check_whole_delta(field, value, name)
        if field.is_relation:
            # an instance, or (through the attname or the field name) its id
            if isinstance(value, field.related_model):
                value = getattr(value, field.target_field.attname)
            field = field.target_field
            while field.is_relation:
                field = field.target_field
        if field.get_internal_type() == "JSONField":
            return json.dumps(json.loads(json.dumps(value, cls=field.encoder)))
        prepared = _unwrap_adapter(field.get_db_prep_value(value, self.connection, prepared=False))
        if isinstance(prepared, str) and field.get_internal_type() == "DecimalField":
            # some Django versions format decimals as strings: a delta must
            # stay a JSON number, and an exact one
            prepared = decimal.Decimal(prepared)
        return _json_value(prepared)

    def encode(self, values, role, seen):
        """A dict of field names to values -> [(column, JSON text)].

        Two names for one column in one dict (``ab_test`` and ``ab_test_id``)
        are refused here: the JSON object would silently keep one of them.
        The same column in two roles is left to the database (42701)."""
        pairs = []
        columns = {}
        for name, value in (values or {}).items():
            field = self.field(name)
            if field.column in columns:
                raise ValueError("%s names column %r twice: as %r and as %r"
                                 % (role, field.column, columns[field.column], name))
            columns[field.column] = name
            seen.add(field.column)
            pairs.append((field.column, self.prepare(field, value, name, role)))
        return pairs

    def implicit(self, seen):
        """Values Model.save() would write for the fields a call leaves out:
        (insert-only pairs, pairs written on every call)."""
        on_insert, always = [], []
        now = timezone.now()
        for field in self.meta.concrete_fields:
            if field.column in seen:
                continue
            if field.primary_key and field.get_internal_type() in (
                    "AutoField", "BigAutoField", "SmallAutoField"):
                continue
            if getattr(field, "generated", False):
                continue
            if getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
                continue
            auto_now = getattr(field, "auto_now", False)
            auto_now_add = getattr(field, "auto_now_add", False)
            if auto_now or auto_now_add:
                # as the fields' pre_save() computes them
                kind = field.get_internal_type()
                value = now if kind == "DateTimeField" else \
                    datetime.date.today() if kind == "DateField" else \
                    datetime.datetime.now().time()
                (always if auto_now else on_insert).append(
                    (field.column, self.prepare(field, value, field.name)))
            elif field.has_default():
                on_insert.append((field.column, self.prepare(field, field.get_default(), field.name)))
        return on_insert, always

    def call_args(self, keys, deltas, assign, on_insert):
        """The four JSON arguments of one call."""
        # no client-side check of the keys: the database says which keys
        # would do (42P10, with the table's usable unique keys in the hint)
        seen = set()
        k = self.encode(keys, "keys", seen)
        d = self.encode(deltas, "deltas", seen)
        a = self.encode(assign, "assign", seen)
        o = self.encode(on_insert, "on_insert", seen)
        implicit_insert, implicit_always = self.implicit(seen)
        return (_json_object(k), _json_object(d), _json_object(a + implicit_always),
                _json_object(o + implicit_insert))

    def instance(self, row_json, db):
        """A model instance from upsert_increment_returning()'s new_row."""
        row = json.loads(row_json, parse_float=decimal.Decimal)
        names, values = [], []
        for field in self.meta.concrete_fields:
            names.append(field.attname)
            value = row.get(field.column)
            if value is not None and field.get_internal_type() != "JSONField":
                target = field
                while target.is_relation:
                    target = target.target_field
                value = target.to_python(value)
                if isinstance(value, datetime.datetime) and settings_use_tz() \
                        and timezone.is_naive(value):
                    value = timezone.make_aware(value, datetime.timezone.utc)
            values.append(value)
        return self.model.from_db(db, names, values)


_INTEGER_FIELDS = {"IntegerField", "BigIntegerField", "SmallIntegerField",
                   "PositiveIntegerField", "PositiveBigIntegerField",
                   "PositiveSmallIntegerField"}


def _check_whole_delta(field, value, name):
    if field.get_internal_type() not in _INTEGER_FIELDS or isinstance(value, (bool, int)):
        return
    if isinstance(value, (float, decimal.Decimal)):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise ValueError("delta for integer field %r must be a whole number; got %r"
                             % (name, value))


def settings_use_tz():
    from django.conf import settings
    return getattr(settings, "USE_TZ", False)


def _db(model, using):
    return using or router.db_for_write(model)


def _one_call(model, keys, deltas, assign, on_insert, using):
    """The database alias, its connection, the model's shape and the four
    JSON arguments of a single-row call."""
    db = _db(model, using)
    connection = connections[db]
    shape = _Shape(model, connection)
    return db, connection, shape, shape.call_args(keys, deltas, assign, on_insert)


# ---------------------------------------------------------------------------
# The three calls
# ---------------------------------------------------------------------------

def upsert_increment(model, keys, deltas=None, assign=None, on_insert=None, using=None):
    """Add ``deltas`` to the row of ``model`` with these ``keys``, creating it
    if needed; returns True if the row was created, False if it existed, and
    None if the row was buffered for the commit (``upsert_counter.flush =
    commit``: whether it is created is known only then).

    ``assign`` values are written on insert and update, ``on_insert`` values
    only on insert.  One SQL statement; the row lock is held until the
    surrounding transaction ends (at once in autocommit mode).
    """
    db, connection, shape, args = _one_call(model, keys, deltas, assign, on_insert, using)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT upsert_increment(%s::regclass, %s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb)::text",
            [shape.table, *args])
        result = json.loads(cursor.fetchone()[0])
    if result.get("inserted") is None:
        return None
    return result["inserted"] == 1


def upsert_increment_returning(model, keys, deltas=None, assign=None, on_insert=None,
                               using=None):
    """As ``upsert_increment``, returning ``(instance, created)`` like
    ``update_or_create``; the instance holds the row as it now is."""
    db, connection, shape, args = _one_call(model, keys, deltas, assign, on_insert, using)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inserted, new_row::text FROM upsert_increment_returning("
            "%s::regclass, %s::jsonb, %s::jsonb, %s::jsonb, %s::jsonb)",
            [shape.table, *args])
        created, row = cursor.fetchone()
    return shape.instance(row, db), created


def _rows(rows):
    for row in rows:
        if isinstance(row, dict):
            unknown = set(row) - {"keys", "deltas", "assign", "on_insert"}
            if unknown or "keys" not in row:
                raise ValueError("a row dict takes keys, deltas, assign and on_insert; got %s"
                                 % sorted(row))
            yield row["keys"], row.get("deltas"), row.get("assign"), row.get("on_insert")
        else:
            keys, deltas = row
            yield keys, deltas, None, None


def upsert_increment_many(model, rows, using=None, chunk_size=DEFAULT_CHUNK_SIZE):
    """Upsert many rows: ``rows`` is an iterable of ``(keys, deltas)`` pairs
    or of dicts with ``keys``, ``deltas``, ``assign`` and ``on_insert``.

    Rows are sent ``chunk_size`` at a time, one SQL statement per chunk, so a
    generator of any length runs in bounded memory.  Within a chunk the
    database merges rows with equal keys (deltas summed; for ``assign`` the
    later row in ``rows`` wins, for ``on_insert`` the earlier) and locks
    them in key order.

    Chunks and transactions: each chunk is its own statement.  In autocommit
    mode each chunk commits on its own, so an error in a later chunk leaves
    the earlier ones written; inside ``transaction.atomic()`` (or with
    ``ATOMIC_REQUESTS``) all chunks commit or roll back together.  Within an
    atomic block the row locks of all chunks are held to its end, and two
    such batches whose chunks meet the same keys in different orders can
    deadlock: sort ``rows`` by key, or use one chunk, if that can happen.

    Returns ``{"inserted": n, "updated": m, "chunks": c}``: the distinct
    keys created and the distinct keys that existed, over all chunks (a key
    in two chunks counts once).  In commit mode (``upsert_counter.flush =
    commit``) nothing is written yet: ``inserted`` and ``updated`` are None
    and ``deferred`` counts the rows buffered.
    """
    db = _db(model, using)
    connection = connections[db]
    shape = _Shape(model, connection)
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    inserted, deferred, chunks = 0, 0, 0
    keys_seen = set()           # distinct keys, as their JSON text
    it = _rows(rows)
    with connection.cursor() as cursor:
        while True:
            chunk = list(itertools.islice(it, chunk_size))
            if not chunk:
                break
            encoded = [shape.call_args(*row) for row in chunk]
            keys_seen.update(e[0] for e in encoded)
            cursor.execute(
                "SELECT upsert_increment(%s::regclass, k, d, a, o ORDER BY ord)::text"
                " FROM unnest(%s::text[]::jsonb[], %s::text[]::jsonb[],"
                " %s::text[]::jsonb[], %s::text[]::jsonb[]) WITH ORDINALITY AS r(k, d, a, o, ord)",
                [shape.table] + [list(col) for col in zip(*encoded)])
            result = json.loads(cursor.fetchone()[0])
            chunks += 1
            if result.get("inserted") is None:
                deferred += result.get("deferred") or 0
            else:
                inserted += result["inserted"]
    if deferred:
        return {"inserted": None, "updated": None, "deferred": deferred, "chunks": chunks}
    # a key is inserted at most once; every other distinct key existed
    return {"inserted": inserted, "updated": len(keys_seen) - inserted, "chunks": chunks}
