"""The public calls, in both modes (the package re-exports them).

Extension mode (``CREATE EXTENSION upsert_counter`` in the database): a
single row is one call of the extension's ``upsert_increment()``; a batch
chunk is one call of its aggregate (``upsert_increment_rows()`` over one
text[] per column when every row of the chunk names the same fields, the
jsonb form otherwise), so the server writes in key order and caches the
plan.

SQL mode (no extension: managed PostgreSQL services): the helper writes the
same ``INSERT ... ON CONFLICT (key columns) DO UPDATE SET n =
COALESCE(t.n, 0) + EXCLUDED.n`` statement a careful hand would.

In both modes a batch is merged in Python first (``_merge``): a window of
input rows at a time, on the caller's values, so that only distinct keys
are encoded and sent, in key order.

Calls that need what only a generated statement can do (different values
on create and on update for one field, per-row results) use SQL mode's
statement in both modes.
"""

import json
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Type,
                    TypeVar, Union)

from django.db import DatabaseError, models
from django.db.utils import IntegrityError, OperationalError
from django.utils.asyncio import async_unsafe

from ._connection import (ConnectionState, column_types, connection_state, extension_failed,
                          nulls_not_distinct, open_model, partitioned, single_cursor)
from ._encode import Encoder, Row, flat
from ._merge import encode_slots, merge_window
from ._spec import ModelSpec, array_literal, json_object
from . import _sql

DEFAULT_CHUNK_SIZE = 1000
DEFAULT_WINDOW = 50000

M = TypeVar("M", bound=models.Model)
Values = Optional[Mapping[str, Any]]
Summary = Dict[str, Optional[int]]
RowSpec = Union[Tuple[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any], models.Model]


# ---------------------------------------------------------------------------
# One row
# ---------------------------------------------------------------------------

def _single(model, keys, deltas, assign, on_insert, defaults, create_defaults, using):
    db, connection, state, spec = open_model(model, using)
    encoder = Encoder(spec)
    if defaults is not None and assign is not None:
        raise ValueError("pass assign or defaults, not both (defaults is Django's name for assign)")
    if create_defaults is not None and on_insert is not None:
        raise ValueError("pass on_insert or create_defaults, not both")
    if create_defaults is None:
        row = encoder.row(keys, deltas, assign if defaults is None else defaults, on_insert)
    else:
        # Django's semantics: create_defaults on create, defaults on update
        row = encoder.row(keys, deltas, None, create_defaults)
        update = spec.columns(list(defaults or {}), "defaults")
        row.update_cols = tuple(update)
        row.update_vals = tuple(c.prepare(defaults[n]) for c, n in zip(update, defaults or {}))
        taken = {c.column for cols in row.cols[:3] for c in cols}
        for c in update:
            if c.column in taken:
                raise ValueError("defaults names column %r, which the call also names in keys, "
                                 "deltas or assign" % c.column)
    return db, connection, state, spec, row


def _refuse_null_keys(state: ConnectionState, spec: ModelSpec, row: Row) -> None:
    """SQL mode: a NULL key never conflicts under a NULLS DISTINCT unique
    index, so the statement would insert a new row each time; the
    extension refuses it (22004), and so does this, unless the table has a
    NULLS NOT DISTINCT unique index on exactly the key columns."""
    if None not in row.vals[0]:
        return
    columns = tuple(sorted(c.column for c in row.cols[0]))
    if not nulls_not_distinct(state, spec, columns):
        raise IntegrityError(
            "a key value is None and %s has no unique index on (%s) whose NULLs are not "
            "distinct: the row would never match an existing one"
            % (spec.meta.db_table, ", ".join(columns)))


def _run_single_sql(connection, state, spec, row, returning_rows):
    """One row through a generated statement; returns (created, row or None)."""
    _refuse_null_keys(state, spec, row)
    sql = _sql.upsert_sql(spec, row.cols, 1, partitioned(state, spec), row.update_cols,
                          returning_rows)
    params = list(flat(row)) + list(row.update_vals)
    with connection.cursor() as cursor:
        for _ in range(5):
            cursor.execute(sql, params)
            got = cursor.fetchone()
            if got is not None:
                return got[-1], got[:-1]
            if not returning_rows:
                return False, None     # DO NOTHING: the row existed
            # get-or-create on an existing row: read it (a later snapshot
            # sees the row the conflict was with); retry if it was deleted
            cursor.execute(*_sql.select_row(spec, row.cols[0], row.vals[0]))
            found = cursor.fetchone()
            if found is not None:
                return False, found
    raise OperationalError("the row was deleted concurrently five times; giving up")


_SINGLE_RESULTS = {'{"updated": 0, "inserted": 1}': True, '{"updated": 1, "inserted": 0}': False}


@async_unsafe
def upsert_increment(model: Type[models.Model], keys: Mapping[str, Any], deltas: Values = None,
                     assign: Values = None, on_insert: Values = None, *,
                     defaults: Values = None, create_defaults: Values = None,
                     using: Optional[str] = None) -> Optional[bool]:
    """Add ``deltas`` to the row of ``model`` with these ``keys``, creating
    it if needed.  Returns True if the row was created, False if it
    existed, None if it was buffered for the commit (extension mode with
    ``upsert_counter.flush = commit``) or cannot be known (SQL mode on a
    partitioned table).

    ``assign``: written on insert and on update.  ``on_insert``: written
    only when the row is created.  Django's names work too: ``defaults``
    alone is ``assign``; with ``create_defaults`` they mean what they mean
    to ``update_or_create()``: ``create_defaults`` on create, ``defaults``
    on update (one field may be in both, with different values).
    """
    for attempt in (1, 2):
        db, connection, state, spec, row = _single(model, keys, deltas, assign, on_insert,
                                                   defaults, create_defaults, using)
        if state.mode == "sql" or row.update_cols:
            return _run_single_sql(connection, state, spec, row, False)[0]
        cursor = single_cursor(connection, state)
        try:
            cursor.execute(state.single_sql, [spec.table, *row.json_args()])
        except DatabaseError as e:
            if attempt == 2 or not extension_failed(connection, e):
                raise
            continue        # the extension is gone: again, in SQL mode
        text = cursor.fetchone()[0]
        # jsonb prints its keys in one order: the two common answers need no parse
        known = _SINGLE_RESULTS.get(text)
        if known is not None:
            return known
        result = json.loads(text)
        if result.get("inserted") is None:
            return None     # commit mode: known at commit
        return result["inserted"] == 1
    raise AssertionError("unreachable")


@async_unsafe
def upsert_increment_returning(model: Type[M], keys: Mapping[str, Any], deltas: Values = None,
                               assign: Values = None, on_insert: Values = None, *,
                               defaults: Values = None, create_defaults: Values = None,
                               using: Optional[str] = None) -> Tuple[M, Optional[bool]]:
    """As ``upsert_increment``, returning ``(instance, created)`` like
    ``update_or_create``; the instance holds the row as it now is.  With
    no deltas and no assign it is get-or-create: an existing row is
    returned without being written."""
    for attempt in (1, 2):
        db, connection, state, spec, row = _single(model, keys, deltas, assign, on_insert,
                                                   defaults, create_defaults, using)
        if state.mode == "sql" or row.update_cols:
            created, values = _run_single_sql(connection, state, spec, row, True)
            return spec.instance_from_row(values, db), created
        try:
            with connection.cursor() as cursor:
                cursor.execute(_sql.returning_call(state.schema), [spec.table, *row.json_args()])
                created, new_row = cursor.fetchone()
        except DatabaseError as e:
            if attempt == 2 or not extension_failed(connection, e):
                raise
            continue
        return spec.instance_from_json(new_row, db), created
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------

_AUTO_FIELDS = ("AutoField", "BigAutoField", "SmallAutoField")


def _pk_names(meta) -> Tuple[str, ...]:
    """The field names of the primary key (a composite key's fields)."""
    pk = meta.pk
    if getattr(pk, "column", None) is None and hasattr(pk, "fields"):
        return tuple(f.name for f in pk.fields)
    return (pk.name,)


def _only_unique_key(spec: ModelSpec) -> Tuple[str, ...]:
    """The key of a model's instances: its one unique constraint besides the
    primary key, else the primary key itself."""
    meta = spec.meta
    candidates = []
    for f in meta.concrete_fields:
        if f.unique and not f.primary_key:
            candidates.append((f.name,))
    for fields in meta.unique_together:
        candidates.append(tuple(fields))
    for c in getattr(meta, "constraints", ()):
        if type(c).__name__ == "UniqueConstraint" and c.fields and c.condition is None \
                and not getattr(c, "expressions", None):
            candidates.append(tuple(c.fields))
    if not candidates:
        return _pk_names(meta)
    if len(candidates) != 1:
        raise ValueError("%s has %d unique constraints besides its primary key: pass "
                         "unique_fields=[...] to say which one is the key"
                         % (meta.object_name, len(candidates)))
    return candidates[0]


def _instance_rows(spec: ModelSpec, rows: Iterable[Any], delta_fields: Optional[Iterable[str]],
                   unique_fields: Optional[Iterable[str]],
                   update_fields: Optional[Iterable[str]]) -> Iterator[Any]:
    """Model instances in a batch, as bulk_create(update_conflicts=True)
    takes them: ``unique_fields`` are the key (inferred: the model's one
    unique constraint besides the primary key, else the primary key;
    ``"pk"`` names the primary key, a composite one too), ``delta_fields``
    are added, ``update_fields`` written on insert and update, every other
    field (after its pre_save(), as bulk_create does) on insert only."""
    if delta_fields is None:
        raise ValueError("model instances in a batch need delta_fields=[...]: the fields to add")
    inferred = unique_fields is None
    names = _only_unique_key(spec) if inferred else \
        tuple(n for name in unique_fields
              for n in (_pk_names(spec.meta) if name == "pk" else (name,)))
    unique = [spec.column(n) for n in names]
    deltas = [spec.column(n) for n in delta_fields]
    update = [spec.column(n) for n in (update_fields or ())]
    named = {c.column for c in unique + deltas + update}
    rest = [c for c in spec.concrete if c.column not in named
            and not getattr(c.field, "generated", False)
            and not (c.field.primary_key and c.field.get_internal_type() in _AUTO_FIELDS)]
    auto_key = inferred and len(unique) == 1 and unique[0].field.primary_key and \
        unique[0].field.get_internal_type() in _AUTO_FIELDS
    for obj in rows:
        if not isinstance(obj, spec.model):
            yield obj
            continue
        if auto_key and obj.pk is None:
            raise ValueError("%s has no unique constraint besides its auto-incremented primary key, "
                             "and an instance has no pk yet: pass unique_fields=[...]"
                             % spec.meta.object_name)
        on_insert = {}
        for c in rest:
            value = c.field.pre_save(obj, True)
            if type(value).__name__ == "DatabaseDefault":
                continue        # Django 5's db_default placeholder: the database's
            on_insert[c.field.attname] = value
        yield {"keys": {c.field.attname: getattr(obj, c.field.attname) for c in unique},
               "deltas": {c.field.attname: getattr(obj, c.field.attname) for c in deltas},
               "assign": {c.field.attname: c.field.pre_save(obj, True) for c in update},
               "on_insert": on_insert}


def _extension_chunk(cursor, state: ConnectionState, spec: ModelSpec, chunk: List[Row]) -> dict:
    """One chunk as one aggregate call.  When every row has one shape:
    upsert_increment_rows() over one text[] per column (each value read by
    its column type's input function; no JSON, no per-value SQL literal to
    parse), else the jsonb form."""
    first = chunk[0].cols
    if state.has_rows_aggregate and all(r.cols is first or r.cols == first for r in chunk):
        cols = first[0] + first[1] + first[2] + first[3]
        arrays = [array_literal(column) for column in zip(*[flat(r) for r in chunk])]
        if None not in arrays:
            params = [spec.table] + [[c.column for c in role] for role in first[1:]] + arrays
            # the chunk is merged: each key is in it once, the order is free
            cursor.execute(_sql.rows_aggregate_call(state.schema, cols, False), params)
            return json.loads(cursor.fetchone()[0])
    encoded = [[json_object(cols, vals) for cols, vals in zip(r.cols, r.vals)] for r in chunk]
    cursor.execute(_sql.jsonb_aggregate_call(state.schema),
                   [spec.table] + [list(col) for col in zip(*encoded)])
    return json.loads(cursor.fetchone()[0])


class _Batch:
    """The running totals of one upsert_increment_many() call."""

    def __init__(self, connection, spec: ModelSpec, db: str, results: bool) -> None:
        self.connection = connection
        self.spec = spec
        self.db = db
        self.results = results
        self.inserted = 0
        self.chunks = 0
        self.partial = False
        self.deferred = False
        self.out: List[Tuple[models.Model, Optional[bool]]] = []

    def send(self, cursor, chunk: List[Row]) -> None:
        """One chunk of merged rows, sorted by key, in the connection's mode
        (found again, and the chunk sent again, if the extension is gone)."""
        for attempt in (1, 2):
            state = connection_state(self.connection)
            if self.results or state.mode == "sql":
                self.send_generated(cursor, state, chunk)
                return
            try:
                result = _extension_chunk(cursor, state, self.spec, chunk)
            except DatabaseError as e:
                if attempt == 2 or not extension_failed(self.connection, e):
                    raise
                continue
            if result.get("inserted") is None:
                self.deferred = True
            else:
                self.inserted += result["inserted"]
            return

    def send_generated(self, cursor, state: ConnectionState, chunk: List[Row]) -> None:
        spec = self.spec
        groups: Dict[Any, List[Row]] = {}
        for row in chunk:
            _refuse_null_keys(state, spec, row)
            group = groups.get(row.cols)
            if group is None:
                group = groups[row.cols] = []
            group.append(row)
        is_partitioned = partitioned(state, spec)
        # one statement per shape, in one order of shapes
        for cols, group in sorted(groups.items(), key=lambda g: tuple(
                tuple(c.column for c in role) for role in g[0])):
            sql, params = _sql.generated_batch(spec, group, is_partitioned, self.results,
                                               lambda: column_types(state, spec))
            if self.results:
                cursor.execute(sql, params)
                for values in cursor.fetchall():
                    self.out.append((spec.instance_from_row(values[:-1], self.db), values[-1]))
                continue
            cursor.execute(_sql.counted(sql), params)
            inserted, _, unknown = cursor.fetchone()
            self.inserted += inserted
            self.partial = self.partial or unknown > 0


@async_unsafe
def upsert_increment_many(model: Type[M], rows: Iterable[RowSpec], *, using: Optional[str] = None,
                          chunk_size: int = DEFAULT_CHUNK_SIZE,
                          window: Optional[int] = None, results: bool = False,
                          delta_fields: Optional[Iterable[str]] = None,
                          unique_fields: Optional[Iterable[str]] = None,
                          update_fields: Optional[Iterable[str]] = None
                          ) -> Union[Summary, List[Tuple[M, Optional[bool]]]]:
    """Upsert many rows.  A row is a ``(keys, deltas)`` pair, a dict with
    ``keys``, ``deltas``, ``assign`` and ``on_insert``, or a model instance
    (then ``delta_fields`` names the fields to add, ``unique_fields`` the
    key, inferred when the model has one unique constraint besides its
    primary key, else the primary key; ``update_fields`` the fields written
    on update too, as ``bulk_create(update_conflicts=True)`` takes them).

    ``window`` input rows at a time are merged in Python on the caller's
    values (deltas summed; ``assign``: the later row wins; ``on_insert``:
    the earlier), then only the distinct keys are encoded and sent, in key
    order, ``chunk_size`` keys per statement.  The default: the whole input
    when it is a list or tuple (already in memory), else ``DEFAULT_WINDOW``
    (50,000) rows at a time, so a generator of any length runs in bounded
    memory.

    Returns ``{"inserted": n, "updated": m, "chunks": c}`` (distinct keys,
    a key in several windows counted once; c statements' worth of chunks);
    in commit mode ``inserted`` and ``updated`` are None and ``deferred``
    counts the input rows buffered for the commit.  With ``results=True``:
    a list of ``(instance, created)``, one per distinct key of each window,
    in key order (written at once, also in commit mode).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if window is None:
        window = None if isinstance(rows, (list, tuple)) else DEFAULT_WINDOW
    elif window < 1:
        raise ValueError("window must be at least 1, or None")
    db, connection, state, spec = open_model(model, using)
    encoder = Encoder(spec)
    source = iter(_instance_rows(spec, rows, delta_fields, unique_fields, update_fields)
                  if delta_fields is not None or unique_fields is not None else rows)
    batch = _Batch(connection, spec, db, results)
    keys_seen = set()
    deferred_rows = 0
    with connection.cursor() as cursor:
        while True:
            slots, read = merge_window(spec, source, window)
            if not read:
                break
            merged, keys = encode_slots(spec, encoder, slots)
            keys_seen.update(keys)
            batch.deferred = False
            for start in range(0, len(merged), chunk_size):
                batch.chunks += 1
                batch.send(cursor, merged[start:start + chunk_size])
            if batch.deferred:
                deferred_rows += read
    if results:
        return batch.out
    if deferred_rows:
        return {"inserted": None, "updated": None, "deferred": deferred_rows, "chunks": batch.chunks}
    if batch.partial:     # a partitioned target in SQL mode: xmax is not available
        return {"inserted": None, "updated": None, "chunks": batch.chunks}
    return {"inserted": batch.inserted, "updated": len(keys_seen) - batch.inserted,
            "chunks": batch.chunks}


# ---------------------------------------------------------------------------
# Rollups
# ---------------------------------------------------------------------------

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
    from ._rollup import rollup
    return rollup(target, queryset, keys, deltas, assign, using=using)


# ---------------------------------------------------------------------------
# Async variants, Django's a-prefix convention
# ---------------------------------------------------------------------------

def _async(fn):
    from asgiref.sync import sync_to_async
    import functools

    @functools.wraps(fn)
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
