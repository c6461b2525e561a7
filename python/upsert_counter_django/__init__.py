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

Keys and columns are model field names (``ab_test``) or attnames
(``ab_test_id``); a foreign key takes a model instance or its id.  Fields a
call does not name behave as ``Model.save()`` would on insert.  See the
README's Django section for every argument, error and guarantee.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Type, TypeVar, Union

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.asyncio import async_unsafe

from . import _core
from ._core import DEFAULT_CHUNK_SIZE, mode
from ._rollup import upsert_rollup as _upsert_rollup

__all__ = [
    "upsert_increment", "upsert_increment_returning", "upsert_increment_many",
    "upsert_rollup", "aupsert_increment", "aupsert_increment_returning",
    "aupsert_increment_many", "aupsert_rollup", "mode", "UpsertCounterQuerySet",
    "UpsertCounterManager", "FieldDoesNotExist", "DEFAULT_CHUNK_SIZE",
]

__version__ = "1.2.0"

M = TypeVar("M", bound=models.Model)
Values = Optional[Mapping[str, Any]]
Summary = Dict[str, Optional[int]]
RowSpec = Union[Tuple[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any], models.Model]


@async_unsafe
def upsert_increment(model: Type[models.Model], keys: Mapping[str, Any], deltas: Values = None,
                     assign: Values = None, on_insert: Values = None, *,
                     defaults: Values = None, create_defaults: Values = None,
                     using: Optional[str] = None) -> Optional[bool]:
    """Add ``deltas`` to the row of ``model`` with these ``keys``, creating
    it if needed.  Returns True if the row was created, False if it
    existed, None if it was buffered for the commit (extension mode with
    ``upsert_counter.flush = commit``).

    ``assign``: written on insert and on update.  ``on_insert``: written
    only when the row is created.  Django's names work too: ``defaults``
    alone is ``assign``; with ``create_defaults`` they mean what they mean
    to ``update_or_create()``: ``create_defaults`` on create, ``defaults``
    on update (one field may be in both, with different values).
    """
    return _core.upsert_increment(model, keys, deltas, assign, on_insert, defaults=defaults,
                                  create_defaults=create_defaults, using=using)


@async_unsafe
def upsert_increment_returning(model: Type[M], keys: Mapping[str, Any], deltas: Values = None,
                               assign: Values = None, on_insert: Values = None, *,
                               defaults: Values = None, create_defaults: Values = None,
                               using: Optional[str] = None) -> Tuple[M, Optional[bool]]:
    """As ``upsert_increment``, returning ``(instance, created)`` like
    ``update_or_create``; the instance holds the row as it now is.  With
    no deltas and no assign it is get-or-create: an existing row is
    returned without being written."""
    return _core.upsert_increment_returning(model, keys, deltas, assign, on_insert,
                                            defaults=defaults, create_defaults=create_defaults,
                                            using=using)


@async_unsafe
def upsert_increment_many(model: Type[M], rows: Iterable[RowSpec], *, using: Optional[str] = None,
                          chunk_size: int = DEFAULT_CHUNK_SIZE, results: bool = False,
                          delta_fields: Optional[Iterable[str]] = None,
                          unique_fields: Optional[Iterable[str]] = None,
                          update_fields: Optional[Iterable[str]] = None
                          ) -> Union[Summary, List[Tuple[M, Optional[bool]]]]:
    """Upsert many rows, ``chunk_size`` per statement (a generator of any
    length runs in bounded memory).  A row is a ``(keys, deltas)`` pair, a
    dict with ``keys``, ``deltas``, ``assign`` and ``on_insert``, or a
    model instance (then ``delta_fields`` names the fields to add,
    ``unique_fields`` the key, inferred when the model has one unique
    constraint, ``update_fields`` the fields written on update too, as
    ``bulk_create(update_conflicts=True)`` takes them).

    Within a chunk equal keys are merged (deltas summed; ``assign``: the
    later row wins; ``on_insert``: the earlier) and written in key order.

    Returns ``{"inserted": n, "updated": m, "chunks": c}`` (distinct keys,
    a key spanning chunks counted once); in commit mode ``inserted`` and
    ``updated`` are None and ``deferred`` counts the buffered rows.  With
    ``results=True``: a list of ``(instance, created)``, one per distinct
    key of each chunk, in key order (written at once, also in commit mode).
    """
    return _core.upsert_increment_many(model, rows, using=using, chunk_size=chunk_size,
                                       results=results, delta_fields=delta_fields,
                                       unique_fields=unique_fields, update_fields=update_fields)


@async_unsafe
def upsert_rollup(target: Type[models.Model], queryset: models.QuerySet, keys: Mapping[str, Any],
                  deltas: Mapping[str, Any], assign: Values = None, *,
                  using: Optional[str] = None) -> Summary:
    """Add the groups of ``queryset`` into ``target`` in one statement.

    ``keys`` maps target fields to source field paths or expressions (the
    groups); ``deltas`` maps target fields to aggregates (``Count("id")``,
    ``Sum("n")``; a NULL aggregate adds 0); ``assign`` maps target fields
    to aggregates written on insert and update (``Max("at")``).  Returns
    ``{"inserted": n, "updated": m}``.  Nothing travels through Python.
    """
    return _upsert_rollup(target, queryset, keys, deltas, assign, using=using)


# -- async variants, Django's a-prefix convention ---------------------------

def _async(fn):
    from asgiref.sync import sync_to_async

    async def wrapper(*args, **kwargs):
        return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)
    wrapper.__name__ = "a" + fn.__name__
    wrapper.__qualname__ = wrapper.__name__
    wrapper.__doc__ = "Async %s(): the same arguments and result, run as Django runs " \
                      "the ORM's async methods (sync_to_async, thread-sensitive)." % fn.__name__
    return wrapper


aupsert_increment = _async(upsert_increment)
aupsert_increment_returning = _async(upsert_increment_returning)
aupsert_increment_many = _async(upsert_increment_many)
aupsert_rollup = _async(upsert_rollup)


# -- ORM-native entry points -------------------------------------------------

class UpsertCounterQuerySet(models.QuerySet):
    """``HourlyLog.objects.upsert_increment(keys=..., deltas=...)`` and the
    other calls as QuerySet methods: the model is the QuerySet's, the
    database its ``using()`` alias (else the router's write database).
    ``Event.objects.filter(...).upsert_rollup(HourlyLog, keys=..., deltas=...)``
    rolls the QuerySet up into another model."""

    def _using(self, kwargs):
        if self._db is not None:
            kwargs.setdefault("using", self._db)
        return kwargs

    def upsert_increment(self, keys, deltas=None, assign=None, on_insert=None, **kwargs):
        return upsert_increment(self.model, keys, deltas, assign, on_insert, **self._using(kwargs))

    def upsert_increment_returning(self, keys, deltas=None, assign=None, on_insert=None, **kwargs):
        return upsert_increment_returning(self.model, keys, deltas, assign, on_insert,
                                          **self._using(kwargs))

    def upsert_increment_many(self, rows, **kwargs):
        return upsert_increment_many(self.model, rows, **self._using(kwargs))

    def upsert_rollup(self, target, keys, deltas, assign=None, **kwargs):
        return upsert_rollup(target, self, keys, deltas, assign, **self._using(kwargs))

    async def aupsert_increment(self, *args, **kwargs):
        return await _async(self.upsert_increment)(*args, **kwargs)

    async def aupsert_increment_returning(self, *args, **kwargs):
        return await _async(self.upsert_increment_returning)(*args, **kwargs)

    async def aupsert_increment_many(self, *args, **kwargs):
        return await _async(self.upsert_increment_many)(*args, **kwargs)

    async def aupsert_rollup(self, *args, **kwargs):
        return await _async(self.upsert_rollup)(*args, **kwargs)


UpsertCounterManager = models.Manager.from_queryset(UpsertCounterQuerySet, "UpsertCounterManager")

