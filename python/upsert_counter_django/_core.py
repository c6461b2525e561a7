"""The calls themselves, in both modes.

Extension mode (``CREATE EXTENSION upsert_counter`` in the database): a
single row is one call of the extension's ``upsert_increment()``; a batch
chunk is one call of its aggregate (``upsert_increment_rows()`` over a
``VALUES`` list when every row of the chunk names the same fields, the
jsonb form otherwise), so the server merges duplicate keys, writes them in
key order and caches the plan.

SQL mode (no extension: managed PostgreSQL services): the helper writes the
same ``INSERT ... ON CONFLICT (key columns) DO UPDATE SET n =
COALESCE(t.n, 0) + EXCLUDED.n`` statement a careful hand would, merges
duplicate keys of a chunk in Python first (deltas summed, ``assign``: the
later row wins, ``on_insert``: the earlier) and sends them in key order.

Calls that need what only a generated statement can do (different values
on create and on update for one field, per-row results) use SQL mode's
statement in both modes.
"""

import itertools
import json

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connections, router
from django.utils import timezone

from ._spec import ROLES, ModelSpec, array_literal, json_object, sort_key, unwrap_adapter

DEFAULT_CHUNK_SIZE = 1000

MODES = ("extension", "sql")


# ---------------------------------------------------------------------------
# Per-connection state: which mode, where the extension lives
# ---------------------------------------------------------------------------

class _ConnectionState:
    """Found once per physical connection (a new connection may reach a
    database where the extension was created or dropped since)."""

    def __init__(self, raw, wanted, mode, schema, version):
        self.raw = raw
        self.wanted = wanted
        self.mode = mode
        self.schema = schema            # quoted, for qualified calls
        self.version = version
        self.relkinds = {}
        self.column_types = {}
        self.cursors = {}
        if mode == "extension":
            # 1.2's plain function for one row (no aggregate node); the
            # aggregate before that
            function = "upsert_increment_call" if _version_at_least(version, (1, 2)) \
                else "upsert_increment"
            self.single_sql = (
                "SELECT %s.%s(%%s::pg_catalog.regclass, %%s::pg_catalog.jsonb, "
                "%%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb)"
                "::pg_catalog.text" % (schema, function))
        self.nulls_not_distinct = {}
        self.specs = {}


_mode_setting = []     # the setting, read once; emptied when settings change


def _setting_changed(setting, **kwargs):
    if setting == "UPSERT_COUNTER_MODE":
        _mode_setting.clear()


setting_changed.connect(_setting_changed)


def _configured_mode(alias):
    if not _mode_setting:
        _mode_setting.append(getattr(settings, "UPSERT_COUNTER_MODE", "auto"))
    setting = _mode_setting[0]
    if isinstance(setting, dict):
        setting = setting.get(alias, "auto")
    if setting not in ("auto",) + MODES:
        raise ValueError("UPSERT_COUNTER_MODE must be \"auto\", \"extension\" or \"sql\"; got %r"
                         % (setting,))
    return setting


def connection_state(connection):
    raw = connection.connection
    if raw is None:
        connection.ensure_connection()
        raw = connection.connection
    wanted = _configured_mode(connection.alias)
    state = getattr(connection, "_upsert_counter_state", None)
    if state is not None and state.raw is raw and state.wanted == wanted:
        return state
    schema = version = None
    if wanted != "sql":
        # the driver's own cursor, as Django's init_connection_state(): a
        # catalog look-up once per connection, not one of the app's queries
        cursor = raw.cursor()
        try:
            cursor.execute(
                "SELECT n.nspname, e.extversion FROM pg_catalog.pg_extension e"
                " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
                " WHERE e.extname = 'upsert_counter'")
            found = cursor.fetchone()
        finally:
            cursor.close()
        if found:
            schema, version = connection.ops.quote_name(found[0]), found[1]
        elif wanted == "extension":
            from django.core.exceptions import ImproperlyConfigured
            raise ImproperlyConfigured(
                "UPSERT_COUNTER_MODE is \"extension\" but the upsert_counter extension is not "
                "installed in database %r: run CREATE EXTENSION upsert_counter there, or use "
                "\"auto\"" % connection.alias)
    mode = "extension" if schema is not None else "sql"
    state = _ConnectionState(raw, wanted, mode, schema, version)
    connection._upsert_counter_state = state
    return state


def mode(using="default"):
    """The mode the helper uses on database alias ``using``:
    ``"extension"`` or ``"sql"``."""
    return connection_state(connections[using]).mode


def _single_cursor(connection, state):
    """The cursor of single-row calls, kept per physical connection: making
    a Django cursor costs about as much Python as the rest of the call.
    Its execute() is Django's as ever (execute wrappers, error translation,
    the broken-transaction check); one is kept for each value of
    ``queries_logged``, since Django decides at creation whether a cursor
    logs its queries."""
    logged = connection.queries_logged
    cursor = state.cursors.get(logged)
    if cursor is None:
        cursor = state.cursors[logged] = connection.cursor()
    return cursor


def _spec(model, connection, state):
    spec = state.specs.get(model)
    if spec is None:
        spec = state.specs[model] = ModelSpec(model, connection)
    return spec


def _open(model, using):
    """The alias, its connection, its state (mode; found on first use of a
    connection) and the model's spec."""
    db = using or router.db_for_write(model)
    connection = connections[db]
    state = connection_state(connection)
    return db, connection, state, _spec(model, connection, state)


def _partitioned(connection, state, spec):
    """SQL mode cannot read xmax through a partitioned parent: such targets
    report created as None.  A catalog look-up once per table and
    connection, on the driver's cursor as connection_state()'s."""
    kind = state.relkinds.get(spec.table)
    if kind is None:
        cursor = state.raw.cursor()
        try:
            cursor.execute("SELECT c.relkind FROM pg_catalog.pg_class c"
                           " WHERE c.oid = %s::pg_catalog.regclass", [spec.table])
            kind = state.relkinds[spec.table] = cursor.fetchone()[0]
        finally:
            cursor.close()
    return kind == "p"


def _version_at_least(version, wanted):
    return tuple(int(p) for p in version.split(".")[:2]) >= wanted


def _has_rows_aggregate(state):
    return _version_at_least(state.version, (1, 2))


# ---------------------------------------------------------------------------
# One row, encoded
# ---------------------------------------------------------------------------

class Row:
    """One call's values, prepared: per role a tuple of Columns and a tuple
    of prepared values; ``update`` holds update-only values (Django's
    ``defaults`` beside ``create_defaults``)."""

    __slots__ = ("cols", "vals", "update_cols", "update_vals", "codec")

    def __init__(self, cols, vals, update_cols=(), update_vals=(), codec=None):
        self.cols = cols
        self.vals = vals
        self.update_cols = update_cols
        self.update_vals = update_vals
        self.codec = codec

    def json_args(self):
        """The four jsonb arguments of the extension's single-row calls."""
        codec = self.codec
        if codec is not None:
            return codec.json_args(self)
        return [json_object(cols, vals) for cols, vals in zip(self.cols, self.vals)]

    def key_identity(self):
        """The key as a hashable value: equal for equal keys."""
        codec = self.codec
        if codec is not None and codec.key_plain:
            if codec.key_perm is None:
                return (codec.key_columns, self.vals[0])
            vals = self.vals[0]
            return (codec.key_columns, tuple([vals[i] for i in codec.key_perm]))
        # by column name, whatever order the call named them in
        pairs = sorted(zip((c.column for c in self.cols[0]), self.vals[0]), key=lambda p: p[0])
        return (tuple(p[0] for p in pairs), tuple(_hashable(unwrap_adapter(p[1])) for p in pairs))


def _hashable(v):
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


class _Codec:
    """How rows naming the same field names in the same order are encoded;
    built once per model, connection and such shape (the values Model.save()
    would add depend on which fields a call names)."""

    def __init__(self, spec, names):
        # a column in two roles is the database's error (42701), in both modes
        cols = []
        named = set()
        for role, role_names in zip(ROLES, names):
            role_cols = spec.columns(role_names, role)
            named.update(c.column for c in role_cols)
            cols.append(role_cols)
        self.key_cols = tuple(cols[0])
        # the key's identity lists the columns by name (key_identity())
        order = sorted(range(len(cols[0])), key=lambda i: cols[0][i].column)
        self.key_columns = tuple(cols[0][i].column for i in order)
        self.key_perm = None if order == list(range(len(order))) else order
        self.key_plain = all(c.plain for c in cols[0])
        on_insert_implicit, always_implicit = spec.implicit(named)
        # implicit values, in this order: constants, "now" values (one per
        # call), callable defaults (per row)
        order = {"const": 0, "now": 1, "row": 2}
        on_insert_implicit = sorted(on_insert_implicit, key=lambda t: order[t[1]])
        self.assign_cols = tuple(cols[2]) + tuple(c for c, _, _ in always_implicit)
        self.insert_cols = tuple(cols[3]) + tuple(c for c, _, _ in on_insert_implicit)
        self.cols = (self.key_cols, tuple(cols[1]), self.assign_cols, self.insert_cols)
        self.always_fns = tuple(fn for _, _, fn in always_implicit)
        self.insert_consts = tuple(v for _, how, v in on_insert_implicit if how == "const")
        self.insert_now_fns = tuple(fn for _, how, fn in on_insert_implicit if how == "now")
        self.insert_row_fns = tuple(fn for _, how, fn in on_insert_implicit if how == "row")
        self.key_pairs = [(c.prepare, n) for c, n in zip(cols[0], names[0])]
        self.delta_pairs = [(c.prepare_delta, n) for c, n in zip(cols[1], names[1])]
        self.assign_pairs = [(c.prepare, n) for c, n in zip(cols[2], names[2])]
        self.insert_pairs = [(c.prepare, n) for c, n in zip(cols[3], names[3])]
        # the caller's order matters to the merge only for values it names
        self.ordered = bool(names[2] or names[3])
        # JSON arguments that are the same in every call of this shape
        self.assign_json = None if self.assign_pairs or self.always_fns else "{}"
        self.insert_json = None if self.insert_pairs or self.insert_now_fns or \
            self.insert_row_fns else json_object(self.insert_cols, self.insert_consts)

    def json_args(self, row):
        cols, vals = self.cols, row.vals
        return [json_object(cols[0], vals[0]), json_object(cols[1], vals[1]),
                self.assign_json or json_object(cols[2], vals[2]),
                self.insert_json or json_object(cols[3], vals[3])]

    def per_call(self, encoder):
        """(every-call implicit values, insert-only ones) for one call."""
        if not self.always_fns and not self.insert_now_fns:
            return (), self.insert_consts
        now = encoder.now()
        return (tuple([fn(now) for fn in self.always_fns]),
                self.insert_consts + tuple([fn(now) for fn in self.insert_now_fns]))

    def encode(self, keys, deltas, assign, on_insert, implicit):
        always, inserts = implicit
        kv = tuple([prep(keys[n]) for prep, n in self.key_pairs])
        dv = tuple([prep(deltas[n], n) for prep, n in self.delta_pairs])
        av = tuple([prep(assign[n]) for prep, n in self.assign_pairs]) + always \
            if self.assign_pairs else always
        ov = tuple([prep(on_insert[n]) for prep, n in self.insert_pairs]) + inserts \
            if self.insert_pairs else inserts
        if self.insert_row_fns:
            ov = ov + tuple([fn() for fn in self.insert_row_fns])
        return Row(self.cols, (kv, dv, av, ov), codec=self)


class _Encoder:
    """One call's encoding: one "now" for every auto_now/auto_now_add value
    of the call, codecs from the model's spec."""

    def __init__(self, spec):
        self.spec = spec
        self._now = None
        self.implicit = {}

    def now(self):
        if self._now is None:
            self._now = timezone.now()
        return self._now

    def row(self, keys, deltas=None, assign=None, on_insert=None):
        keys = keys or {}
        deltas = deltas or {}
        assign = assign or {}
        on_insert = on_insert or {}
        shape = (tuple(keys), tuple(deltas), tuple(assign), tuple(on_insert))
        codecs = self.spec.codecs
        codec = codecs.get(shape)
        if codec is None:
            codec = _Codec(self.spec, shape)
            if len(codecs) < 256:       # bounded: shapes come from code, not data
                codecs[shape] = codec
        implicit = self.implicit.get(codec)
        if implicit is None:
            implicit = self.implicit[codec] = codec.per_call(self)
        return codec.encode(keys, deltas, assign, on_insert, implicit)


# ---------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------

_XMAX_INSERTED = "(t.xmax OPERATOR(pg_catalog.=) '0'::pg_catalog.xid)"


def _upsert_sql(spec, cols, nrows, partitioned, update_cols=(), returning_rows=False,
                order_source=None):
    """INSERT ... ON CONFLICT for rows of one shape: VALUES placeholders for
    ``nrows`` rows, or ``order_source`` (a SELECT text) instead."""
    key_cols, delta_cols, assign_cols, insert_cols = cols
    targets = key_cols + delta_cols + assign_cols + insert_cols
    sql = ["INSERT INTO ", spec.table, " AS t (", ", ".join(c.quoted for c in targets), ") "]
    if order_source is not None:
        sql.append(order_source)
    else:
        one = "(" + ", ".join(["%s"] * len(targets)) + ")"
        sql.append("VALUES " + ", ".join([one] * nrows))
    sets = ["%s = COALESCE(t.%s, 0) OPERATOR(pg_catalog.+) EXCLUDED.%s" % (c.quoted, c.quoted, c.quoted)
            for c in delta_cols]
    sets += ["%s = EXCLUDED.%s" % (c.quoted, c.quoted) for c in assign_cols]
    sets += ["%s = %%s" % c.quoted for c in update_cols]
    sql.append(" ON CONFLICT (" + ", ".join(c.quoted for c in key_cols) + ") ")
    sql.append("DO UPDATE SET " + ", ".join(sets) if sets else "DO NOTHING")
    inserted = "NULL::pg_catalog.bool" if partitioned else _XMAX_INSERTED
    if returning_rows:
        sql.append(" RETURNING " + spec.returning_list() + ", " + inserted)
    else:
        sql.append(" RETURNING " + inserted)
    return "".join(sql)


def _column_types(state, spec):
    """The table's column types without typmods, by column name: casts for
    text arrays (the column's typmod then applies as an INSERT applies it,
    an over-long varchar is an error, not cut).  Once per table and
    connection, on the driver's cursor."""
    types = state.column_types.get(spec.table)
    if types is None:
        cursor = state.raw.cursor()
        try:
            cursor.execute("SELECT a.attname, pg_catalog.format_type(a.atttypid, NULL)"
                           " FROM pg_catalog.pg_attribute a"
                           " WHERE a.attrelid = %s::pg_catalog.regclass AND a.attnum > 0"
                           " AND NOT a.attisdropped", [spec.table])
            types = state.column_types[spec.table] = dict(cursor.fetchall())
        finally:
            cursor.close()
    return types


def _generated_batch(state, spec, group, partitioned, results):
    """The statement for merged rows of one shape, sorted by key: from one
    text[] per column when every value has a text form (one parameter per
    column, no literal per value to parse), else a VALUES list."""
    cols = group[0].cols
    targets = cols[0] + cols[1] + cols[2] + cols[3]
    flat = [_flat(row) for row in group]
    arrays = [array_literal(column) for column in zip(*flat)]
    if None not in arrays:
        types = _column_types(state, spec)
        source = "SELECT %s FROM ROWS FROM (%s) AS u(%s)" % (
            ", ".join("u.%s::%s" % (c.quoted, types[c.column]) for c in targets),
            ", ".join(["pg_catalog.unnest(%s::pg_catalog.text[])"] * len(targets)),
            ", ".join(c.quoted for c in targets))
        return (_upsert_sql(spec, cols, 0, partitioned, returning_rows=results,
                            order_source=source), arrays)
    return (_upsert_sql(spec, cols, len(group), partitioned, returning_rows=results),
            [v for values in flat for v in values])


def _merge(rows):
    """Rows of one chunk merged by key, as the extension merges them:
    deltas summed, assign: the later row wins, on_insert: the earlier.
    Returns (the merged rows sorted by key, their key identities).  A key
    seen once keeps its Row as it is; only repeated keys are combined."""
    merged = {}
    for row in rows:
        ident = row.key_identity()
        have = merged.get(ident)
        if have is None:
            merged[ident] = row
            continue
        if isinstance(have, Row):
            have = merged[ident] = [have.cols[0], have.vals[0],
                                    dict(zip(have.cols[1], have.vals[1])),
                                    dict(zip(have.cols[2], have.vals[2])),
                                    dict(zip(have.cols[3], have.vals[3]))]
        deltas = have[2]
        for c, v in zip(row.cols[1], row.vals[1]):
            deltas[c] = deltas[c] + v if c in deltas else v
        have[3].update(zip(row.cols[2], row.vals[2]))
        for c, v in zip(row.cols[3], row.vals[3]):
            have[4].setdefault(c, v)
    try:
        idents = sorted(merged)
    except TypeError:       # None beside values, or values of two types
        idents = sorted(merged, key=lambda i: (i[0], sort_key(i[1])))
    out = []
    for ident in idents:
        have = merged[ident]
        if isinstance(have, Row):
            out.append(have)
            continue
        key_cols, key_vals, deltas, assign, on_insert = have
        # rows of different shapes: a column one row adds to or assigns is
        # not also written by another's insert-only value (an unnamed
        # field's default is one); a column left in two roles (a delta in one
        # row, assigned in another) is the statement's 42701
        for c in list(on_insert):
            if c in deltas or c in assign:
                del on_insert[c]
        cols = (key_cols, tuple(sorted(deltas, key=lambda c: c.column)),
                tuple(sorted(assign, key=lambda c: c.column)),
                tuple(sorted(on_insert, key=lambda c: c.column)))
        out.append(Row(cols, (key_vals, tuple(deltas[c] for c in cols[1]),
                              tuple(assign[c] for c in cols[2]),
                              tuple(on_insert[c] for c in cols[3]))))
    return out, idents


def _refuse_null_keys(state, spec, row):
    """SQL mode: a NULL key never conflicts under a NULLS DISTINCT unique
    index, so the statement would insert a new row each time; the
    extension refuses it (22004), and so does this, unless the table has a
    NULLS NOT DISTINCT unique index on exactly the key columns (asked of
    the catalog, not the model: the model may say more than the database
    has)."""
    if None not in row.vals[0]:
        return
    columns = tuple(sorted(c.column for c in row.cols[0]))
    key = (spec.table, columns)
    allowed = state.nulls_not_distinct.get(key)
    if allowed is None:
        allowed = False
        if spec.connection.pg_version >= 150000:
            cursor = state.raw.cursor()
            try:
                cursor.execute(
                    "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i"
                    " WHERE i.indrelid = %s::pg_catalog.regclass AND i.indisunique"
                    " AND i.indnullsnotdistinct AND i.indpred IS NULL AND i.indexprs IS NULL"
                    " AND i.indnkeyatts = %s AND (SELECT pg_catalog.array_agg(a.attname::pg_catalog.text"
                    " ORDER BY a.attname) FROM pg_catalog.pg_attribute a"
                    " WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))"
                    " OPERATOR(pg_catalog.=) %s::pg_catalog.text[])",
                    [spec.table, len(columns), list(columns)])
                allowed = cursor.fetchone()[0]
            finally:
                cursor.close()
        state.nulls_not_distinct[key] = allowed
    if not allowed:
        from django.db.utils import IntegrityError
        raise IntegrityError(
            "a key value is None and %s has no unique index on (%s) whose NULLs are not "
            "distinct: the row would never match an existing one"
            % (spec.meta.db_table, ", ".join(columns)))


def _flat(row):
    return row.vals[0] + row.vals[1] + row.vals[2] + row.vals[3]


def _run_single_sql(connection, state, spec, row, returning_rows):
    """One row through a generated statement; returns (created, row or None)."""
    _refuse_null_keys(state, spec, row)
    partitioned = _partitioned(connection, state, spec)
    sql = _upsert_sql(spec, row.cols, 1, partitioned, row.update_cols, returning_rows)
    params = list(_flat(row)) + list(row.update_vals)
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
            # (a None key, under a NULLS NOT DISTINCT index, as IS NULL)
            where = " AND ".join("t.%s IS NULL" % c.quoted if v is None else "t.%s = %%s" % c.quoted
                                 for c, v in zip(row.cols[0], row.vals[0]))
            cursor.execute("SELECT %s FROM %s AS t WHERE %s" % (spec.returning_list(), spec.table, where),
                           [v for v in row.vals[0] if v is not None])
            found = cursor.fetchone()
            if found is not None:
                return False, found
    from django.db.utils import OperationalError
    raise OperationalError("the row was deleted concurrently five times; giving up")


# ---------------------------------------------------------------------------
# Public calls (sync); __init__ documents them
# ---------------------------------------------------------------------------

def _single(model, keys, deltas, assign, on_insert, defaults, create_defaults, using):
    db, connection, state, spec = _open(model, using)
    encoder = _Encoder(spec)
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


def upsert_increment(model, keys, deltas=None, assign=None, on_insert=None, *,
                     defaults=None, create_defaults=None, using=None):
    db, connection, state, spec, row = _single(model, keys, deltas, assign, on_insert,
                                               defaults, create_defaults, using)
    if state.mode == "sql" or row.update_cols:
        return _run_single_sql(connection, state, spec, row, False)[0]
    cursor = _single_cursor(connection, state)
    cursor.execute(state.single_sql, [spec.table, *row.json_args()])
    text = cursor.fetchone()[0]
    # jsonb prints its keys in one order: the two common answers need no parse
    known = _SINGLE_RESULTS.get(text)
    if known is not None:
        return known
    result = json.loads(text)
    if result.get("inserted") is None:
        return None     # commit mode: known at commit
    return result["inserted"] == 1


_SINGLE_RESULTS = {'{"updated": 0, "inserted": 1}': True, '{"updated": 1, "inserted": 0}': False}


def upsert_increment_returning(model, keys, deltas=None, assign=None, on_insert=None, *,
                               defaults=None, create_defaults=None, using=None):
    db, connection, state, spec, row = _single(model, keys, deltas, assign, on_insert,
                                               defaults, create_defaults, using)
    if state.mode == "sql" or row.update_cols:
        created, values = _run_single_sql(connection, state, spec, row, True)
        return spec.instance_from_row(values, db), created
    args = row.json_args()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT inserted, new_row::pg_catalog.text FROM %s.upsert_increment_returning("
            "%%s::pg_catalog.regclass, %%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb, "
            "%%s::pg_catalog.jsonb, %%s::pg_catalog.jsonb)" % state.schema, [spec.table, *args])
        created, new_row = cursor.fetchone()
    return spec.instance_from_json(new_row, db), created


def _instance_rows(spec, rows, delta_fields, unique_fields, update_fields):
    """Model instances in a batch, as bulk_create(update_conflicts=True)
    takes them: ``unique_fields`` are the key (inferred when the model has
    exactly one unique constraint), ``delta_fields`` are added,
    ``update_fields`` written on insert and update, every other field
    (after its pre_save(), as bulk_create does) on insert only."""
    if delta_fields is None:
        raise ValueError("model instances in a batch need delta_fields=[...]: the fields to add")
    if unique_fields is None:
        unique_fields = _only_unique_key(spec)
    unique = [spec.column(n) for n in unique_fields]
    deltas = [spec.column(n) for n in delta_fields]
    update = [spec.column(n) for n in (update_fields or ())]
    named = {c.column for c in unique + deltas + update}
    rest = [c for c in spec.concrete if c.column not in named
            and not getattr(c.field, "generated", False)
            and not (c.field.primary_key and c.field.get_internal_type() in
                     ("AutoField", "BigAutoField", "SmallAutoField"))]
    for obj in rows:
        if not isinstance(obj, spec.model):
            yield obj
            continue
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


def _only_unique_key(spec):
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
    if len(candidates) != 1:
        raise ValueError("%s has %d unique constraints besides its primary key: pass "
                         "unique_fields=[...] to say which one is the key"
                         % (meta.object_name, len(candidates)))
    return candidates[0]


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


def upsert_increment_many(model, rows, *, using=None, chunk_size=DEFAULT_CHUNK_SIZE,
                          results=False, delta_fields=None, unique_fields=None,
                          update_fields=None):
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    db, connection, state, spec = _open(model, using)
    encoder = _Encoder(spec)
    source = _rows(_instance_rows(spec, rows, delta_fields, unique_fields, update_fields)
                   if delta_fields is not None or unique_fields is not None else rows)
    inserted, deferred, chunks = 0, 0, 0
    partial = False
    keys_seen = set()
    out = []
    generated = results or state.mode == "sql"
    partitioned = _partitioned(connection, state, spec) if generated else False
    with connection.cursor() as cursor:
        while True:
            chunk = [encoder.row(*r) for r in itertools.islice(source, chunk_size)]
            if not chunk:
                break
            chunks += 1
            if generated:
                merged, idents = _merge(chunk)
                groups = {}
                for row in merged:
                    _refuse_null_keys(state, spec, row)
                    groups.setdefault(tuple(tuple(c.column for c in cols) for cols in row.cols),
                                      []).append(row)
                for shape in sorted(groups):
                    group = groups[shape]
                    sql, params = _generated_batch(state, spec, group, partitioned, results)
                    if results:
                        cursor.execute(sql, params)
                        for values in cursor.fetchall():
                            out.append((spec.instance_from_row(values[:-1], db), values[-1]))
                        continue
                    cursor.execute("WITH w(ins) AS (%s) SELECT pg_catalog.count(*) FILTER "
                                   "(WHERE w.ins), pg_catalog.count(*) FILTER (WHERE w.ins IS NULL) "
                                   "FROM w" % sql, params)
                    ins, unknown = cursor.fetchone()
                    inserted += ins
                    partial = partial or unknown > 0
                keys_seen.update(idents)
                continue
            keys_seen.update(r.key_identity() for r in chunk)
            result = _extension_chunk(cursor, state, spec, chunk)
            if result.get("inserted") is None:
                deferred += result.get("deferred") or 0
            else:
                inserted += result["inserted"]
    if results:
        return out
    if deferred:
        return {"inserted": None, "updated": None, "deferred": deferred, "chunks": chunks}
    if partial:     # a partitioned target in SQL mode: xmax is not available
        return {"inserted": None, "updated": None, "chunks": chunks}
    return {"inserted": inserted, "updated": len(keys_seen) - inserted, "chunks": chunks}


def _extension_chunk(cursor, state, spec, chunk):
    """One chunk as one aggregate call.  When every row has one shape:
    upsert_increment_rows() over one text[] per column (each value read by
    its column type's input function; no JSON, no per-value SQL literal to
    parse), else the jsonb form."""
    first = chunk[0].cols
    if _has_rows_aggregate(state) and all(r.cols is first or r.cols == first for r in chunk):
        cols = first[0] + first[1] + first[2] + first[3]
        columns = list(zip(*[_flat(r) for r in chunk]))
        arrays = [array_literal(column) for column in columns]
        if None not in arrays:
            names = ", ".join(c.quoted for c in cols)
            unnest = ", ".join(["pg_catalog.unnest(%s::pg_catalog.text[])"] * len(cols))
            params = [spec.table] + [[c.column for c in role] for role in first[1:]] + arrays
            if chunk[0].codec is not None and chunk[0].codec.ordered:
                # ORDER BY the caller's order: assign keeps the later row,
                # on_insert the earlier
                sql = ("SELECT %s.upsert_increment_rows(%%s::pg_catalog.regclass, r, "
                       "%%s::pg_catalog.text[], %%s::pg_catalog.text[], %%s::pg_catalog.text[] "
                       "ORDER BY u.\"upsert_counter ord\")::pg_catalog.text "
                       "FROM ROWS FROM (%s) WITH ORDINALITY AS u(%s, \"upsert_counter ord\"), "
                       "LATERAL (SELECT %s) AS r"
                       % (state.schema, unnest, names, ", ".join("u." + c.quoted for c in cols)))
            else:
                sql = ("SELECT %s.upsert_increment_rows(%%s::pg_catalog.regclass, r, "
                       "%%s::pg_catalog.text[], %%s::pg_catalog.text[], %%s::pg_catalog.text[])"
                       "::pg_catalog.text FROM ROWS FROM (%s) AS r(%s)"
                       % (state.schema, unnest, names))
            cursor.execute(sql, params)
            return json.loads(cursor.fetchone()[0])
    encoded = [[json_object(cols, vals) for cols, vals in zip(r.cols, r.vals)]
               for r in chunk]
    cursor.execute(
        "SELECT %s.upsert_increment(%%s::pg_catalog.regclass, k, d, a, o ORDER BY ord)::pg_catalog.text"
        " FROM ROWS FROM (pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]),"
        " pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]),"
        " pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]),"
        " pg_catalog.unnest(%%s::pg_catalog.text[]::pg_catalog.jsonb[]))"
        " WITH ORDINALITY AS r(k, d, a, o, ord)"
        % state.schema, [spec.table] + [list(col) for col in zip(*encoded)])
    return json.loads(cursor.fetchone()[0])
